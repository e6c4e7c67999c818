import subprocess
import sys

CORE = ["alignimation_tui.cli", "alignimation_tui.config", "alignimation_tui.domain", "alignimation_tui.photos",
        "alignimation_tui.scan", "alignimation_tui.store", "alignimation_tui.models", "alignimation_tui.register",
        "alignimation_tui.render", "alignimation_tui.pipeline", "alignimation_tui.headless",
        "alignimation_tui.detect.face", "alignimation_tui.detect.facing", "alignimation_tui.detect.identity",
        "alignimation_tui.detect.body", "alignimation_tui.body_pipeline", "alignimation_tui.background"]


def test_core_runs_without_textual():
    code = f"import sys, importlib; [importlib.import_module(m) for m in {CORE!r}]; " \
           "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "alignimation_tui", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--once" in out.stdout
