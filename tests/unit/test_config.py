import pytest

from alignimation_tui.cli import main
from alignimation_tui.config import Config, ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_no_file_means_defaults():
    assert load_config(None) == Config()


def test_sample_config_documents_every_key_with_its_default():
    import tomllib
    from pathlib import Path

    from alignimation_tui.config import as_table

    sample = Path(__file__).resolve().parents[2] / "sample_config.toml"
    assert tomllib.loads(sample.read_text()) == as_table(Config())
    assert load_config(sample) == Config()


def test_values_are_read(tmp_path):
    cfg = load_config(write(tmp_path, 'device = "cpu"\n[detect]\nsize = 640\n[facing]\nmax_yaw_deg = 20\n'))
    assert cfg.device == "cpu" and cfg.detect.size == 640 and cfg.facing.max_yaw_deg == 20.0


@pytest.mark.parametrize("text, key, words", [
    ("[detect]\nsise = 3\n", "detect.sise", "did you mean 'detect.size'"),
    ("[detect]\nsize = 'big'\n", "detect.size", "must be an integer"),
    ("[detect]\nsize = 10\n", "detect.size", "between 64 and 8192"),
    ("device = 'tpu'\n", "device", "must be one of"),
    ("[facing]\nkeep_turned = 1\n", "facing.keep_turned", "true or false"),
    ("[register]\nlandmark_weights = [1, 2]\n", "register.landmark_weights", "5 non-negative"),
    ("detect = 3\n", "detect", "must be a table"),
])
def test_errors_name_the_key(tmp_path, text, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == key and words in str(err.value)


def test_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[detect\n"))


def test_cli_exits_2_and_names_the_key(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code = main([str(tmp_path / "photos"), "--once", "--config", str(write(tmp_path, "[render]\nfps = -1\n"))])
    assert code == 2
    assert "render.fps" in capsys.readouterr().err


def test_cli_usage_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--once"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), "--once", "--device", "tpu"])
    assert exit_.value.code == 2
