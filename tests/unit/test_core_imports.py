import os
import subprocess
import sys

import pytest

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


def _package_imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, every import statement (TYPE_CHECKING and
    function-level ones too); importing ``a.b.c`` counts as importing ``a.b`` as well."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "alignimation_tui"
    modules = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = (f, parts[-1] == "__init__")
    graph = {}
    for name, (f, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[:len(here) - node.level + 1] if node.level else []
                target = ".".join(base + (node.module.split(".") if node.module else []))
                targets = [target] + [f"{target}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    dep = ".".join(parts[:i])
                    if dep in modules and dep != name and not name.startswith(dep + "."):
                        deps.add(dep)
        graph[name] = deps
    return graph


def test_no_import_cycle():
    graph = _package_imports()
    cycles = []

    def reach(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return seen

    for name in graph:
        back = [d for d in graph[name] if name in reach(d) or d == name]
        if back:
            cycles.append((name, sorted(back)))
    assert cycles == []


def test_nothing_outside_the_modes_reads_a_detection_by_name_or_compares_a_mode():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "alignimation_tui"
    duck = re.compile(r"""(getattr|hasattr)\([^)]*["'](face|faces|person|persons|points|face_index)["']""")
    named = re.compile(r"""(mode|\.name)\s*(==|!=|in)\s*[("']+(face|body)|["'](face|body)["']\s*(==|!=)""")
    found = []
    for f in root.rglob("*.py"):
        if "modes" in f.relative_to(root).parts:
            continue
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if duck.search(line) or named.search(line):
                found.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
    assert found == []


def test_rerender_never_imports_torch(tmp_path):
    """With nothing new to detect, neither a warm ``--once`` nor ``--render-only`` imports torch
    (seconds of a re-render): the device is chosen only when a model is needed."""
    from tests.conftest import save_with_date, similarity, warped_astronaut

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (angle, scale) in enumerate([(0, 1.0), (8, 0.9)]):
        save_with_date(warped_astronaut(similarity(angle, scale, 64, 60)), folder / f"{i}.jpg")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c"), "XDG_DATA_HOME": str(tmp_path / "d")}
    out = str(tmp_path / "a.mp4")
    cold = subprocess.run([sys.executable, "-m", "alignimation_tui", str(folder), "--once", "--out", out],
                          capture_output=True, text=True, env=env, timeout=300)
    assert cold.returncode == 0, cold.stderr
    for extra in ([], ["--render-only"]):
        code = ("import sys; from alignimation_tui.cli import main; "
                f"rc = main([{str(folder)!r}, '--once', '--out', {out!r}, *{extra!r}]); "
                "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', "
                "'kornia', 'facenet_pytorch')))")
        warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert warm.stdout.strip().splitlines()[-1] == "0 []", (extra, warm.stdout[-2000:], warm.stderr[-2000:])


def test_layers_import_downwards():
    """DESIGN.md's layering: value types know no curation, the config knows no stage, and a stage
    never reaches the store (only the pipeline and the modes, which own the caching, do)."""
    graph = _package_imports()
    pkg = "alignimation_tui"
    assert f"{pkg}.nudge" not in graph[f"{pkg}.domain"]
    assert f"{pkg}.framing" not in graph[f"{pkg}.config"]
    stages = [name for name in graph if name.count(".") >= 1 and name.split(".")[1] in (
        "colour", "framing", "register", "outliers", "curate", "nudge", "domain", "config", "borders",
        "background", "detect", "render")]
    assert len(stages) > 15
    reaching = {name for name in stages if f"{pkg}.store" in graph[name]}
    assert reaching == set(), reaching


@pytest.mark.parametrize("torch_imported", [True, False])
def test_the_command_exits_fast_and_still_says_everything(tmp_path, torch_imported):
    """The command skips the interpreter's teardown (0.4-1.3 s of torch's, 0.05 s without it): its
    exit status, what it printed and the exit handlers' work all still come out. (A thread left
    waiting shows the teardown skipped: the interpreter's own exit would wait for it.)"""
    code = ("import atexit, sys, threading" + (", torch" if torch_imported else "") + "\n"
            "threading.Thread(target=threading.Event().wait, daemon=False).start()\n"
            "atexit.register(lambda: print('exit handler ran', flush=False))\n"
            "print('buffered before the exit', end='')\n"
            f"sys.argv = ['alignimation-tui', {str(tmp_path / 'missing')!r}, '--once']\n"
            "from alignimation_tui.cli import console_main\n"
            "console_main()\n"
            "print('never here')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "is not a folder" in out.stderr
    assert "buffered before the exit" in out.stdout and "exit handler ran" in out.stdout
    assert "never here" not in out.stdout


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc (Linux)")
@pytest.mark.parametrize("asked, threads", [(None, 1), ("2", 2)])
def test_the_command_keeps_numpys_blas_on_one_thread_unless_asked(asked, threads):
    """The command sets ``OPENBLAS_NUM_THREADS=1`` before numpy loads (its pool's spinning thread
    took CPU from the detection workers); a value the person set stays."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if asked is not None:
        env["OPENBLAS_NUM_THREADS"] = asked
    code = ("import os, alignimation_tui.cli, numpy\n"
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == [asked or "1", str(threads if os.cpu_count() and os.cpu_count() > 1 else 1)]


def test_headless_imports_rich_beside_the_first_look(monkeypatch):
    """``--once``'s module does not import rich (30-40 ms at the start, on the run's only busy core):
    ``run_once`` has it imported on a thread of its own while the photos are first looked at."""
    code = ("import sys, alignimation_tui.headless as h\n"
            "print(any(m.split('.')[0] == 'rich' for m in sys.modules))\n"
            "t = h.import_rich_soon(); t.join()\n"
            "print(t.name, 'rich.console' in sys.modules and 'rich.table' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "import", "rich", "True"]
