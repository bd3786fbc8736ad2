#!/usr/bin/env python
"""Mutation testing of the main-job modules: a seeded sample of mutants per module.

Run it through tox (``tox -e mutation``; arguments after ``--`` come here), or directly
with an interpreter that has the project and mutmut installed::

    python scripts/mutation.py                      # every module, the default sample
    python scripts/mutation.py --modules medusa.verify sedd.losses --max-mutants 20
    python scripts/mutation.py --tests-ref 9b91988  # the same mutants against an older test suite

The tool is mutmut (pinned in tox.ini). Why mutmut and not cosmic-ray: mutmut 3 compiles
every mutant of a file into one copy of it behind a trampoline, records once which tests
call which function, and runs each mutant in a fork of a process that has already imported
pytest, torch and the test modules, running only the tests that reach the mutated function.
cosmic-ray starts the whole test command afresh for each mutant (torch and onnxruntime
imports cost seconds each time on a 2-core machine) and edits the source in place. mutmut is
maintained (3.x releases through 2026) and checks its own setup: before any mutant it runs
the tests with every mutated function raising and stops unless a test fails, which proves
that the tests import the mutated copy and not the editable install.

How a module is run. mutmut derives a mutant's module name from its path relative to the
working directory, so each module gets a scratch workspace ``<work>/<label>/<module>``
holding a link to its package (``engine`` or a plugin's ``engine_*``) and a ``setup.cfg``
that tells mutmut to mutate that one file and to run the module's test files where they
are in the repository (their conftest files and data paths are relative to them). The
workspace's ``mutants/`` folder comes first on ``PYTHONPATH`` (also for subprocesses the
tests start), before the repository's own source folders, so the editable installs of the
dev environment are bypassed. Before mutating, the selected tests run once on the
unmutated code; any that fail there are deselected and listed in the report.

Sampling: all mutants of the file are generated, sorted by name, and ``--max-mutants`` of
them are drawn with ``random.Random(f"{seed}:{module}")``: the same source gives the same
sample whatever the test suite, so runs against two test suites are comparable.

The JSON report gives per module: mutants generated, tried, killed, survived, timed out,
the score ((killed + timeout) / tried, mutmut's convention; mutants that no selected test
reaches count as survivors), and every survivor (file, line, the mutation as a diff, and
the reason when ``--equivalent`` lists it as an equivalent mutant).

mutmut only mutates code inside functions and methods, and skips functions with
decorators other than @staticmethod/@classmethod (properties, ``@torch.no_grad()``):
module constants and such functions are not covered by this run.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN_ROOTS = ("plugins/medusa", "plugins/sedd", "plugins/graphnovo")
TEST_DIRS = ("tests", "plugins/medusa/tests", "plugins/sedd/tests", "plugins/graphnovo/tests")
DEFAULT_SEED = 20240917
DEFAULT_MAX = 25
DEFAULT_EQUIVALENT = REPO / "docs" / "mutation" / "equivalent.json"


@dataclass(frozen=True)
class Module:
    name: str
    root: str  # folder that holds the package ("" for the core)
    package: str  # import package: engine, engine_medusa, ...
    file: str  # path inside the package
    tests: tuple[str, ...]  # test files, relative to the repository root
    deselect: tuple[str, ...] = field(default=())  # test name patterns (-k) left out: slow or real models

    @property
    def source(self) -> str:
        return str(Path(self.root) / self.package / self.file)


MED, SED, GN = "plugins/medusa/tests/", "plugins/sedd/tests/", "plugins/graphnovo/tests/"
EDGE = "test_edge_cases.py"
MODULES = (
    Module(
        "medusa.verify", "plugins/medusa", "engine_medusa", "verify.py", (MED + "test_verify.py", MED + "test_tree.py")
    ),
    Module("medusa.tree", "plugins/medusa", "engine_medusa", "tree.py", (MED + "test_tree.py", MED + "test_verify.py")),
    Module(
        "sedd.sampling",
        "plugins/sedd",
        "engine_sedd",
        "sampling.py",
        (SED + "test_exact_answers.py", SED + "test_sampling_oracle.py", SED + "test_graphs_losses.py", SED + EDGE),
    ),
    Module(
        "sedd.losses",
        "plugins/sedd",
        "engine_sedd",
        "losses.py",
        (SED + "test_exact_answers.py", SED + "test_graphs_losses.py", SED + "test_radd.py", SED + EDGE),
        ("training_torch_and_onnxruntime",),
    ),
    Module(
        "sedd.likelihood",
        "plugins/sedd",
        "engine_sedd",
        "likelihood.py",
        (SED + "test_exact_answers.py", SED + "test_radd.py", SED + "test_sampling_oracle.py", SED + EDGE),
        ("training_torch_and_onnxruntime",),
    ),
    Module(
        "graphnovo.decoding",
        "plugins/graphnovo",
        "engine_graphnovo",
        "decoding.py",
        (GN + "test_decoding_rules.py", GN + "test_graph.py", GN + "test_knapsack.py", GN + "test_plugin.py"),
    ),
    Module(
        "graphnovo.inference",
        "plugins/graphnovo",
        "engine_graphnovo",
        "inference.py",
        (GN + "test_decoding_rules.py", GN + "test_graph.py", GN + "test_plugin.py"),
    ),
    Module("io.mztab", "", "engine", "io/mztab.py", ("tests/test_io_mztab.py", "tests/test_io_files.py")),
    Module("io.peptides", "", "engine", "io/peptides.py", ("tests/test_io_peptides.py", "tests/test_io_mztab.py")),
    # the example-plugin test runs the engine in a subprocess that inherits mutmut's "stats" mode,
    # where recording a call needs mutmut's config in the working folder: it cannot run here
    Module("testing", "", "engine", "testing.py", ("tests/test_conformance_kit.py",), ("third_party_example",)),
    Module(
        "artifacts",
        "",
        "engine",
        "artifacts.py",
        ("tests/test_artifacts.py", "tests/test_conformance_kit.py"),
        ("third_party_example",),
    ),
)
BY_NAME = {m.name: m for m in MODULES}


def status_of(code) -> str:
    """mutmut's exit-code convention (mutmut.stats.status_by_exit_code), folded into our columns."""
    if code in (1, 3):
        return "killed"
    if code in (36, 24, -24, 152, 255):
        return "timeout"
    if code == 0:
        return "survived"
    if code in (5, 33):
        return "no_tests"
    if code is None:
        return "not_checked"
    return "other"  # suspicious, segfault, ...


def run_env(repo: Path, mutants: Path | None) -> dict[str, str]:
    """Mutated copy first, then the repository's sources (ahead of any editable install)."""
    paths = ([str(mutants)] if mutants else []) + [str(repo)] + [str(repo / r) for r in PLUGIN_ROOTS]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")
    env.setdefault("PYTHONHASHSEED", "0")
    env.pop("ENGINE_THREADS", None)  # the plugins' conftests set 1; core tests read the variable as "unset"
    shared = repo.parent / "shared" / "data"
    if "ENGINE_DATA_DIR" not in env and shared.is_dir():
        env["ENGINE_DATA_DIR"] = str(shared)
    return env


def prepare_workspace(ws: Path, repo: Path, mod: Module, tests: list[str]) -> None:
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    (ws / mod.package).symlink_to(repo / mod.root / mod.package, target_is_directory=True)
    lines = [
        "[mutmut]",
        f"source_paths = {mod.package}",
        f"only_mutate = {mod.package}/{mod.file}",
        "pytest_add_cli_args_test_selection =",
        *[f"    tests/{Path(t).name}" for t in tests],
        "pytest_add_cli_args =",
        "    -p",
        "    no:cacheprovider",
        "    -W",
        "    ignore::DeprecationWarning",
    ]
    if mod.deselect:
        lines += ["    -k", "    " + " and ".join(f"not {k}" for k in mod.deselect)]
    # a mutant is a timeout (counted as killed) past 8x its tests' clean CPU time plus 8 s
    lines += ["timeout_multiplier = 4.0", "timeout_constant = 1.0"]
    lines += ["use_git_change_detection = false", "track_dependencies = true", ""]
    (ws / "setup.cfg").write_text("\n".join(lines))


def generate(ws: Path, repo: Path, mod: Module) -> list[str]:
    """Write mutants/ (mutmut's own generator) and return every mutant name of the file."""
    code = (
        "import mutmut.__main__ as m\n"
        "from mutmut.utils.file_utils import copy_src_dir\n"
        "from mutmut.mutation.trampoline import set_mutant_under_test\n"
        "set_mutant_under_test('mutant_generation')\n"
        "copy_src_dir()\n"
        "m.create_mutants(1)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ws, check=True, capture_output=True, text=True)
    meta = json.loads((ws / "mutants" / mod.package / (mod.file + ".meta")).read_text())
    # pytest runs in mutants/ with it as rootdir: the test folder is linked in there, so node
    # ids stay relative to it; the tests resolve their own paths (conftest, data) through the link
    (ws / "mutants" / "tests").symlink_to(repo / mod.root / "tests", target_is_directory=True)
    return sorted(meta["exit_code_by_key"])


def failing_on_clean_code(ws: Path, repo: Path, mod: Module, tests: list[str], log) -> list[str]:
    """Node ids (as mutmut's pytest run names them) of selected tests that fail unmutated."""
    report = ws / "clean-report.txt"
    args = [sys.executable, "-m", "pytest", "--rootdir=.", "-q", "-p", "no:cacheprovider", "-rf", "-W"]
    args += ["ignore::DeprecationWarning", "-p", "no:randomly", *[f"tests/{Path(t).name}" for t in tests]]
    if mod.deselect:
        args += ["-k", " and ".join(f"not {k}" for k in mod.deselect)]
    env = run_env(repo, ws / "mutants") | {"MUTANT_UNDER_TEST": ""}
    done = subprocess.run(args, cwd=ws / "mutants", env=env, capture_output=True, text=True)
    report.write_text(done.stdout + done.stderr)
    failed = re.findall(r"^FAILED (\S+)", done.stdout, flags=re.M)
    if done.returncode not in (0, 1) or (done.returncode == 1 and not failed):
        log(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"{mod.name}: the selected tests do not run (pytest exit {done.returncode})")
    return [f.split(" - ")[0] for f in failed]


def survivor_entry(ws: Path, mod: Module, name: str, status: str, equivalent: dict[str, str]) -> dict:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = os.getcwd()
    os.chdir(ws)
    try:
        diff = get_diff_for_mutant(name, path=Path(mod.package) / mod.file)
        line = locate(Path(mod.package) / mod.file, name, diff)
    finally:
        os.chdir(here)
    changes = [ln for ln in diff.splitlines()[2:] if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    entry = {"mutant": name, "file": mod.source, "line": line, "status": status, "mutation": "\n".join(changes)}
    if name in equivalent:
        entry["equivalent"] = equivalent[name]
    return entry


def locate(path: Path, mutant: str, diff: str) -> int | None:
    """File line of the first changed line: the diff is of the function alone, so its old line
    number is offset by where the function's ``def`` stands in the diffed text and in the file."""
    import libcst as cst
    from mutmut.mutation.diff_apply import read_mutants_module, read_original_function

    mangled = mutant.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[1]
    cls, func = mangled.split("ǁ")[1:3] if "ǁ" in mangled else (None, mangled[2:])
    def_line = None
    for node in ast.walk(ast.parse(path.read_text())):
        body = node.body if isinstance(node, ast.ClassDef) and node.name == cls else []
        if cls is None and isinstance(node, ast.Module):
            body = node.body
        for item in body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == func:
                def_line = item.lineno
    old = None
    for hunk in re.finditer(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@\n((?:[ +-].*\n?)*)", diff, flags=re.M):
        n = int(hunk.group(1))
        for ln in hunk.group(2).splitlines():
            if ln.startswith("-") or ln.startswith("+"):
                old = n
                break
            n += 1
        if old is not None:
            break
    if def_line is None or old is None:
        return def_line
    code = cst.Module([read_original_function(read_mutants_module(path), mutant)]).code.strip().splitlines()
    k = next((i for i, ln in enumerate(code) if ln.lstrip().startswith(("def ", "async def "))), 0)
    return def_line + (old - 1 - k)


def run_module(mod: Module, repo: Path, work: Path, args, equivalent: dict[str, str], log) -> dict:
    started = time.monotonic()
    tests = [t for t in mod.tests if (repo / t).is_file()]
    result = {"file": mod.source, "tests": tests, "missing_tests": [t for t in mod.tests if t not in tests]}
    if mod.deselect:
        result["tests_left_out"] = [f"-k not {k}" for k in mod.deselect]
    if not tests:
        result.update(error="none of its test files exist in this test suite")
        return result
    ws = work / mod.name
    prepare_workspace(ws, repo, mod, tests)
    names = generate(ws, repo, mod)
    sample = sorted(random.Random(f"{args.seed}:{mod.name}").sample(names, min(args.max_mutants, len(names))))
    if args.mutants:  # a recheck of named mutants: only those, and nothing in a module without any
        sample = sorted(set(names) & set(args.mutants))
        if not sample:
            return {**result, "skipped": "none of the named mutants is in this module"}
    log(f"{mod.name}: {len(names)} mutants, running {len(sample)} against {len(tests)} test files")
    failing = failing_on_clean_code(ws, repo, mod, tests, log)
    if failing:
        log(f"{mod.name}: deselected, failing on the unmutated code: {failing}")
        cfg = (ws / "setup.cfg").read_text()
        extra = "".join(f"    --deselect\n    {f}\n" for f in failing)
        (ws / "setup.cfg").write_text(cfg.replace("pytest_add_cli_args =\n", "pytest_add_cli_args =\n" + extra, 1))
    result["deselected_failing_on_clean_code"] = failing
    cmd = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]
    cmd += ["run", "--max-children", str(args.max_children), *sample]
    out = ws / "mutmut.log"
    with out.open("w") as fh:
        done = subprocess.run(
            cmd, cwd=ws, env=run_env(repo, ws / "mutants"), stdout=fh, stderr=subprocess.STDOUT, timeout=args.timeout
        )
    meta = json.loads((ws / "mutants" / mod.package / (mod.file + ".meta")).read_text())["exit_code_by_key"]
    log_text = out.read_text()
    if "could not find any test case for any mutant" in log_text:  # no selected test reaches the file
        meta = {n: 33 for n in sample}
    elif done.returncode != 0 or all(meta.get(n) is None for n in sample):
        log(log_text[-4000:])
        raise SystemExit(f"{mod.name}: mutmut failed (exit {done.returncode}); see {out}")
    statuses = {n: status_of(meta.get(n)) for n in sample}
    counts = {k: sum(1 for s in statuses.values() if s == k) for k in ("killed", "survived", "timeout", "no_tests")}
    counts["other"] = len(sample) - sum(counts.values())
    tried = len(sample)
    survivors = [
        survivor_entry(ws, mod, n, s, equivalent)
        for n, s in statuses.items()
        if s in ("survived", "no_tests", "other", "not_checked")
    ]
    equiv = sum(1 for s in survivors if "equivalent" in s)
    result.update(
        mutants_generated=len(names),
        tried=tried,
        **counts,
        score=round((counts["killed"] + counts["timeout"]) / tried, 4) if tried else None,
        equivalent=equiv,
        score_without_equivalent=round((counts["killed"] + counts["timeout"]) / (tried - equiv), 4)
        if tried > equiv
        else None,
        forced_fail_check="passed" if "Running mutation testing" in log_text else "not run (no test reaches the file)",
        seconds=round(time.monotonic() - started, 1),
        sampled=sample,
        survivors=survivors,
    )
    return result


def tests_at(ref: str, repo: Path, work: Path) -> Path:
    """A copy of the working tree's sources with the test folders of ``ref``."""
    dest = work / f"tree-{ref}" / "main"
    if dest.parent.exists():
        shutil.rmtree(dest.parent)
    dest.mkdir(parents=True)
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, check=True, capture_output=True
    ).stdout.split(b"\0")
    for f in filter(None, files):
        src = repo / f.decode()
        rel = f.decode()
        if any(rel == d or rel.startswith(d + "/") for d in TEST_DIRS) or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    archive = subprocess.run(["git", "archive", ref, *TEST_DIRS], cwd=repo, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    shared = repo.parent / "shared"
    if shared.exists():
        (dest.parent / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", nargs="*", choices=sorted(BY_NAME), help="default: all")
    ap.add_argument("--max-mutants", type=int, default=DEFAULT_MAX, help=f"sample size per module ({DEFAULT_MAX})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"sampling seed ({DEFAULT_SEED})")
    ap.add_argument("--mutants", nargs="*", help="run only these mutant names (rechecking survivors)")
    ap.add_argument("--tests-ref", help="run against the test folders of this git ref (same source)")
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--max-children", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800, help="wall-clock seconds per module")
    ap.add_argument("--equivalent", type=Path, default=DEFAULT_EQUIVALENT, help="JSON: mutant name -> reason")
    ap.add_argument("-o", "--output", type=Path, help="JSON report (default: print it)")
    args = ap.parse_args(argv)
    try:
        os.nice(19)
    except OSError:
        pass
    repo = args.repo.resolve()
    work = (args.work or Path(tempfile.mkdtemp(prefix="engine-mutation-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    equivalent = json.loads(args.equivalent.read_text()) if args.equivalent and args.equivalent.is_file() else {}
    equivalent = {k: v for k, v in equivalent.items() if not k.startswith("_")}

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    import mutmut

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    tree = tests_at(args.tests_ref, repo, work) if args.tests_ref else repo
    started = time.monotonic()
    report = {
        "tool": f"mutmut {getattr(mutmut, '__version__', '?')}",
        "seed": args.seed,
        "max_mutants_per_module": args.max_mutants,
        "source_commit": commit,
        "tests": f"test folders of {args.tests_ref}" if args.tests_ref else "the working tree's tests",
        "score": "(killed + timeout) / tried; mutants no selected test reaches count as survivors",
        "modules": {},
    }
    try:
        for mod in [BY_NAME[n] for n in (args.modules or BY_NAME)]:
            res = run_module(mod, tree, work / "ws", args, equivalent, log)
            report["modules"][mod.name] = res
            if "score" in res:
                log(
                    f"{mod.name}: tried {res['tried']} killed {res['killed']} survived {res['survived']} "
                    f"timeout {res['timeout']} no tests {res['no_tests']} score {res['score']} ({res['seconds']} s)"
                )
    finally:
        report["seconds"] = round(time.monotonic() - started, 1)
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text)
        else:
            sys.stdout.write(text)
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
