import os
import subprocess
import sys

CORE = ["alignimation_tui.cli", "alignimation_tui.config", "alignimation_tui.domain", "alignimation_tui.photos",
        "alignimation_tui.scan", "alignimation_tui.store", "alignimation_tui.models", "alignimation_tui.register",
        "alignimation_tui.render", "alignimation_tui.pipeline", "alignimation_tui.headless",
        "alignimation_tui.detect.face", "alignimation_tui.detect.facing", "alignimation_tui.detect.identity",
        "alignimation_tui.triage", "alignimation_tui.watch", "alignimation_tui.preview",
        "alignimation_tui.detect.body", "alignimation_tui.modes.body", "alignimation_tui.modes.face",
        "alignimation_tui.framing", "alignimation_tui.colour", "alignimation_tui.background",
        "alignimation_tui.curate", "alignimation_tui.nudge"]


def test_core_runs_without_textual():
    code = f"import sys, importlib; [importlib.import_module(m) for m in {CORE!r}]; " \
           "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_modes_do_not_import_the_pipeline():
    """The pipeline calls the modes, never the other way round (no import cycle)."""
    code = ("import sys, alignimation_tui.modes.face, alignimation_tui.modes.body; "
            "print('alignimation_tui.pipeline' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "alignimation_tui", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--once" in out.stdout


def test_once_never_imports_textual(tmp_path):
    from tests.conftest import save_with_date, similarity, warped_astronaut

    folder = tmp_path / "photos"
    folder.mkdir()
    save_with_date(warped_astronaut(similarity(0, 1.0, 64, 60)), folder / "a.jpg")
    code = ("import sys; from alignimation_tui.cli import main; "
            f"rc = main([{str(folder)!r}, '--once', '--out', {str(tmp_path / 'a.gif')!r}]); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c"), "XDG_DATA_HOME": str(tmp_path / "d")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr


def test_app_refuses_without_a_terminal(tmp_path):
    out = subprocess.run([sys.executable, "-m", "alignimation_tui", str(tmp_path)], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert out.returncode == 2 and "needs a terminal" in out.stderr and "--once" in out.stderr
