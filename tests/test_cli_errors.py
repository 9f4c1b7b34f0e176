"""No traceback for a user mistake, anywhere: every command, given bad numbers or bad paths (missing, a
folder, a plain file where a folder belongs, read-only, non-UTF-8, binary), ends with exactly one
`error:` line naming what was wrong and exit code 2. A bug (an unexpected exception) prints one line
and where its full traceback was saved. Error text keeps its brackets.

The sweep runs the real entry point (`cli.app.run_command`, what `harness-opt` runs) in-process;
read-only cases run the command in a subprocess under bubblewrap with the folder bound read-only
(the tests run as root, whom file modes do not stop).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness_opt.cli.app import run_command

REPO = Path(__file__).resolve().parents[1]
SEED = str(REPO / "harnesses" / "banking77" / "v0001")
SUITE = str(REPO / "tasks" / "banking77")


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-paths")
    folder = root / "folder"
    folder.mkdir()
    rng = random.Random(12)
    binary = root / "binary.bin"
    binary.write_bytes(bytes([0, 0xFF, 0x00, 0x9C]) + bytes(rng.randrange(256) for _ in range(4000)))
    latin1 = root / "latin1.txt"
    latin1.write_bytes("café crème, naïve façade\n".encode("latin-1"))
    plain = root / "file.txt"
    plain.write_text("just text\n", encoding="utf-8")
    # a suite folder whose suite.toml is binary, and one whose suite.toml is latin-1
    for name, data in (("binsuite", binary.read_bytes()), ("latinsuite", latin1.read_bytes())):
        (root / name).mkdir()
        (root / name / "suite.toml").write_bytes(data)
    # an init-made suite whose tasks.jsonl holds random bytes
    assert run_command(["init", "rnd", "--root", str(root / "proj")]) == 0
    (root / "proj" / "tasks" / "rnd" / "tasks.jsonl").write_bytes(binary.read_bytes())
    return {
        "missing": str(root / "missing"),
        "missing_dir_file": str(root / "missing" / "out.html"),
        "folder": str(folder),
        "binary": str(binary),
        "latin1": str(latin1),
        "file": str(plain),
        "binsuite": str(root / "binsuite"),
        "latinsuite": str(root / "latinsuite"),
        "rndharness": str(root / "proj" / "harnesses" / "rnd" / "v0001"),
        "rndsuite": str(root / "proj" / "tasks" / "rnd"),
    }


def one_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the command; assert exit 2, no traceback, exactly one `error:` line; return that line."""
    code = run_command(args)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text, text
    errors = [line for line in out.err.splitlines() if line.startswith("error:")]
    assert code == 2, f"exit {code} for {args}: {text[-2000:]}"
    assert len(errors) == 1, f"{args}: {out.err!r}"
    assert "unexpected" not in errors[0], errors[0]  # a user mistake, not a bug
    return errors[0]


BAD_NUMBERS = [
    (["eval", SEED, "--suite", SUITE, "--limit", "0"], "--limit"),
    (["eval", SEED, "--suite", SUITE, "--limit", "-1"], "--limit"),
    (["eval", SEED, "--suite", SUITE, "--limit", "abc"], "--limit"),
    (["eval", SEED, "--suite", SUITE, "--trials", "0"], "--trials"),
    (["eval", SEED, "--suite", SUITE, "--concurrency", "0"], "--concurrency"),
    (["eval", SEED, "--suite", SUITE, "--concurrency", "100000"], "--concurrency"),
    (["eval", SEED, "--suite", SUITE, "--max-infra-failures", "1.5"], "--max-infra-failures"),
    (["eval", SEED, "--suite", SUITE, "--timeout-s", "soon"], "--timeout-s"),
    (["eval", SEED, "--suite", SUITE, "--max-retries", "x"], "--max-retries"),
    (["optimize", SEED, "--suite", SUITE, "--budget", "0"], "--budget"),
    (["optimize", SEED, "--suite", SUITE, "--budget", "-5m"], "--budget"),
    (["optimize", SEED, "--suite", SUITE, "--budget", "forever"], "--budget"),
    (["optimize", SEED, "--suite", SUITE, "--iterations", "-1"], "--iterations"),
    (["optimize", SEED, "--suite", SUITE, "--dollars", "-1"], "--dollars"),
    (["optimize", SEED, "--suite", SUITE, "--val-limit", "0"], "--val-limit"),
    (["optimize", SEED, "--suite", SUITE, "--rollouts", "0"], "--rollouts"),
    (["optimize", SEED, "--suite", SUITE, "--alpha", "2"], "--alpha"),
    (["optimize", SEED, "--suite", SUITE, "--train-sample", "0"], "--train-sample"),
    (["optimize", SEED, "--suite", SUITE, "--test-limit", "-3"], "--test-limit"),
    (["optimize", SEED, "--suite", SUITE, "--parallel", "0"], "--parallel"),
    (["optimize", SEED, "--suite", SUITE, "--max-infra-failures", "-0.1"], "--max-infra-failures"),
    (["optimize", SEED, "--suite", SUITE, "--meta-context", "5"], "--meta-context"),
    (["doctor", SUITE, "--dollars", "-1"], "--dollars"),
    (["doctor", SUITE, "--budget", "0"], "--budget"),
    (["doctor", SUITE, "--timeout-s", "x"], "--timeout-s"),
    (["premortem", SUITE, "--limit", "0"], "--limit"),
    (["premortem", SUITE, "--seed", "abc"], "--seed"),
    (["runs", "--limit", "0"], "--limit"),
    (["runs", "--limit", "many"], "--limit"),
    (["traces", "show", "some-run", "t1", "--trial", "abc"], "--trial"),
    (["traces", "show", "some-run", "t1", "--width", "wide"], "--width"),
    (["export", SEED, "--suite", SUITE, "--trials", "0"], "--trials"),
    (["export", SEED, "--suite", SUITE, "--concurrency", "0"], "--concurrency"),
    (["leaderboard", "--max-infra-failures", "2"], "--max-infra-failures"),
]


def _id(value: object) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize(("args", "option"), BAD_NUMBERS, ids=_id)
def test_a_bad_number_is_one_error_line_naming_the_option(
    capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    line = one_error(capsys, args)
    assert option in line


# (args with {placeholders} for the `paths` fixture, text the error line must contain)
BAD_PATHS = [
    (["eval", "{missing}", "--suite", SUITE], "{missing}"),
    (["eval", "{file}", "--suite", SUITE], "{file}"),
    (["eval", "{binary}", "--suite", SUITE], "{binary}"),
    (["eval", SEED, "--suite", "{missing}"], "{missing}"),
    (["eval", SEED, "--suite", "{file}"], "{file}"),
    (["eval", SEED, "--suite", "{folder}"], "{folder}"),
    (["eval", SEED, "--suite", "{binsuite}"], "{binsuite}"),
    (["eval", SEED, "--suite", "{latinsuite}"], "{latinsuite}"),
    (["eval", "{rndharness}", "--suite", "{rndsuite}"], "tasks.jsonl"),
    (["eval", SEED, "--suite", SUITE, "--data", "{missing}"], "{missing}"),
    (["optimize", "{missing}", "--suite", SUITE], "{missing}"),
    (["optimize", SEED, "--suite", "{missing}"], "{missing}"),
    (["optimize", SEED, "--suite", "{binsuite}"], "{binsuite}"),
    (["optimize", SEED, "--suite", "{latinsuite}"], "{latinsuite}"),
    (["optimize", "{rndharness}", "--suite", "{rndsuite}"], "tasks.jsonl"),
    (["optimize", SEED, "--suite", SUITE, "--evidence", "{missing}"], "{missing}"),
    (["optimize", SEED, "--suite", SUITE, "--evidence", "{binary}"], "{binary}"),
    (["doctor", "{missing}"], "{missing}"),
    (["doctor", "{file}"], "{file}"),
    (["doctor", "{binsuite}"], "{binsuite}"),
    (["doctor", SUITE, "{missing}"], "{missing}"),
    (["premortem", "{missing}"], "{missing}"),
    (["premortem", "{latinsuite}"], "{latinsuite}"),
    (["diff", "{missing}", SEED], "{missing}"),
    (["report", "-o", "{missing_dir_file}"], "{missing_dir_file}"),
    (["report", "-o", "{folder}"], "{folder}"),
    (["export", "{missing}", "--suite", SUITE], "{missing}"),
    (["export", SEED, "--suite", "{missing}"], "{missing}"),
    (["export", SEED, "--suite", SUITE, "--config", "{missing}"], "{missing}"),
    (["export", SEED, "--suite", SUITE, "--config", "{folder}"], "{folder}"),
    (["export", SEED, "--suite", SUITE, "--config", "{binary}"], "{binary}"),
    (["export", SEED, "--suite", SUITE, "--config", "{latin1}"], "{latin1}"),
    (["traces", "import", "{missing}", "--format", "openai-jsonl"], "{missing}"),
    (["traces", "import", "{folder}", "--format", "openai-jsonl"], "{folder}"),
    (["traces", "import", "{binary}", "--format", "openai-jsonl"], "{binary}"),
    (["traces", "import", "{binary}", "--format", "otel"], "{binary}"),
    (["traces", "import", "{binary}", "--format", "langfuse"], "{binary}"),
    (["traces", "import", "{latin1}", "--format", "openai-jsonl"], "{latin1}"),
    (["traces", "to-tasks", "{missing}", "--out", "{folder}/t.jsonl"], "{missing}"),
    (["traces", "to-tasks", "{binary}", "--out", "{folder}/t.jsonl"], "{binary}"),
    (["init", "x", "--root", "{file}"], "{file}"),
    (["init", "x", "--root", "{folder}", "--from-openai-tools", "{missing}"], "{missing}"),
    (["init", "x", "--root", "{folder}", "--from-openai-tools", "{folder}"], "{folder}"),
    (["init", "x", "--root", "{folder}", "--from-openai-tools", "{binary}"], "{binary}"),
    (["init", "x", "--root", "{folder}", "--from-openai-tools", "{latin1}"], "{latin1}"),
    (["init", "x", "--root", "{folder}", "--system-prompt", "{missing}"], "{missing}"),
    (["init", "x", "--root", "{folder}", "--system-prompt", "{binary}"], "{binary}"),
    (["traces", "show", "no-such-run", "t1"], "no-such-run"),
    (["audit", "no-such-run"], "no-such-run"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_PATHS, ids=_id)
def test_a_bad_path_is_one_error_line_naming_it(
    capsys: pytest.CaptureFixture[str], paths: dict[str, str], args: list[str], expected: str
) -> None:
    line = one_error(capsys, [a.format(**paths) for a in args])
    assert expected.format(**paths) in line


def _read_only(folder: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`harness-opt ARGS` with `folder` bound read-only (bubblewrap: root ignores file modes)."""
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap is needed to make a folder read-only for root; install bubblewrap"
    return subprocess.run(
        [
            bwrap,
            "--dev-bind",
            "/",
            "/",
            "--ro-bind",
            str(folder),
            str(folder),
            "--",
            sys.executable,
            "-m",
            "harness_opt",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env, "COLUMNS": "200"},
    )


def _check_one_error(done: subprocess.CompletedProcess[str], expected: str) -> None:
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, text[-3000:]
    assert expected in errors[0], errors[0]


def test_a_read_only_home_is_one_error_for_eval_and_read_commands_still_work(tmp_path: Path) -> None:
    from harness_opt.testing import scripted_model

    home = tmp_path / "home"
    env = {"HARNESS_OPT_HOME": str(home), "HARNESS_OPT_TRACES": str(home / "traces")}
    with scripted_model("ro", ["card_arrival"] * 2) as model:  # a ledger with results, then read-only
        os.environ.update(env)
        assert run_command(["eval", SEED, "--suite", SUITE, "--limit", "2", "--model", model.model]) == 0
    out = tmp_path / "out"
    out.mkdir()
    report = _read_only(out, ["report", "--suite", SUITE, "-o", str(out / "r.html")], env)
    _check_one_error(report, str(out / "r.html"))
    board = _read_only(home, ["leaderboard", "--suite", SUITE], env)
    assert board.returncode == 0 and "banking77@v0001" in board.stdout, board.stdout + board.stderr
    assert _read_only(home, ["runs"], env).returncode == 0
    args = ["eval", SEED, "--suite", SUITE, "--limit", "3", "--model", "local/smollm2"]
    evaluation = _read_only(home, args, env)
    _check_one_error(evaluation, str(home))


def test_a_read_only_fresh_home_and_read_only_outputs(tmp_path: Path) -> None:
    fresh = tmp_path / "ro"
    fresh.mkdir()
    env = {"HARNESS_OPT_HOME": str(fresh / "home"), "HARNESS_OPT_TRACES": str(fresh / "home" / "traces")}
    _check_one_error(_read_only(fresh, ["leaderboard"], env), str(fresh / "home"))
    _check_one_error(_read_only(fresh, ["init", "x", "--root", str(fresh)], {}), str(fresh))


def test_an_unexpected_exception_is_one_line_and_a_saved_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    import harness_opt.llm.catalog as catalog

    def broken() -> list[object]:
        raise RuntimeError("a bug [in] the catalog")

    monkeypatch.setattr(catalog, "list_models", broken)
    assert run_command(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith("error: unexpected RuntimeError: a bug [in] the catalog")
    saved = Path(line.split("full traceback: ")[1].split(")")[0])
    assert saved.is_file() and saved.is_relative_to(isolated_home)
    text = saved.read_text()
    assert "Traceback" in text and "RuntimeError: a bug [in] the catalog" in text and "in broken" in text


def test_error_text_keeps_its_brackets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Rich markup ate `[splits]`, `[harness]`, `[submission]`: errors, help and reports are text."""
    suite = tmp_path / "s"
    suite.mkdir()
    (suite / "suite.toml").write_text('[suite]\nname = "s"\n[splits]\nbogus = 1\n', encoding="utf-8")
    line = one_error(capsys, ["eval", SEED, "--suite", str(suite)])
    assert "[" in line and "]" in line  # the loader names the table: [splits] / [data] / [suite]
    export = one_error(
        capsys, ["export", SEED, "--suite", SUITE, "--config", str(_submission_without_table(tmp_path))]
    )
    assert "[submission]" in export
    assert run_command(["doctor", "--help"]) == 0
    assert "[env var: HARNESS_OPT_API_BASE]" in capsys.readouterr().out


def _submission_without_table(tmp_path: Path) -> Path:
    config = tmp_path / "submit.toml"
    config.write_text('[submission]\nmodel_organization = 3\nno_such_field = "x"\n', encoding="utf-8")
    return config
