"""Nothing rlntp did not write is overwritten, relabelled or dropped: sweep and recipe directories, output files,
hostile sweep files and damaged inputs, each refused in one line with nothing changed or left behind."""

import copy
import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import pytest

from rlntp.cli import main

pytestmark = pytest.mark.unit

TINY_SWEEP = {
    "pretrain": {"task": {"d": 4, "p_cot": 0.5}, "model": {"layers": 1, "width": 16, "heads": 2},
                 "train": {"steps": 8, "batch_size": 16, "lr": 3e-3, "eval_every": 4, "eval_samples": 32,
                           "save_every": 4},
                 "axes": {"train.seed": [0, 1]}},
    "posttrain": {"grpo": {"from_steps": ["last"], "post": {"steps": 2, "eval_every": 1, "eval_samples": 32,
                                                           "save_every": 2, "prompts_per_step": 2,
                                                           "rollouts_per_prompt": 2}}},
}


def _write(path: Path, spec: dict) -> Path:
    path.write_text(json.dumps(spec))
    return path


def _md5s(root: Path) -> dict[str, str]:
    """Every file under `root` with its MD5 (the lock file's contents change with its holder)."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "rlntp.lock"}



@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A finished tiny sweep (2 pre-training runs, GRPO from each) and its file."""
    root = tmp_path_factory.mktemp("sweep")
    file = _write(root / "sweep.json", TINY_SWEEP)
    main(["sweep", str(file), "--out", str(root / "out"), "--device", "cpu", "--quiet"])
    return file, root / "out"


def _copy(tree: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(tree, to)
    return to


@pytest.mark.integration
def test_a_sweep_into_a_recipe_directory_is_refused_and_changes_nothing(tmp_path, monkeypatch, finished_sweep, refused):
    from rlntp.experiments import Preset, fig1

    preset = copy.deepcopy(TINY_SWEEP)
    preset["pretrain"]["axes"] = {"train.seed": [0]}
    monkeypatch.setitem(fig1.RECIPE.presets, "ci", Preset("a test's", preset))
    recipe = tmp_path / "fig1"
    main(["reproduce", "fig1", "--preset", "ci", "--out", str(recipe), "--device", "cpu", "--quiet"])
    before = _md5s(recipe)
    other = copy.deepcopy(TINY_SWEEP)
    other["pretrain"]["task"]["d"] = 6
    err = refused(["sweep", str(_write(tmp_path / "other.json", other)), "--out", str(recipe), "--device",
                            "cpu"], "is the directory of the 'fig1' recipe")
    assert _md5s(recipe) == before, err


def test_a_users_folder_holding_a_sweep_file_is_refused(tmp_path, refused):
    project = tmp_path / "proj"
    project.mkdir()
    file = _write(project / "sweep.json", TINY_SWEEP)
    pd.DataFrame({"mine": [1, 2]}).to_parquet(project / "results.parquet")
    (project / "status.json").write_text('{"my": "notes"}')
    before = _md5s(project)
    refused(["sweep", str(file), "--out", str(project), "--device", "cpu"], "is not an rlntp sweep status")
    assert _md5s(project) == before
    (project / "status.json").unlink()
    before = _md5s(project)
    refused(["sweep", str(file), "--out", str(project), "--device", "cpu"],
             "holds files that rlntp did not write (results.parquet, sweep.json)")
    assert _md5s(project) == before


@pytest.mark.integration
def test_a_changed_sweep_is_refused_naming_the_run_and_the_field(tmp_path, finished_sweep, refused):
    file, out = finished_sweep
    out = _copy(out, tmp_path / "out")
    before = _md5s(out)
    changed = copy.deepcopy(TINY_SWEEP)
    changed["pretrain"]["train"]["lr"] = 0.05
    refused(["sweep", str(_write(tmp_path / "changed.json", changed)), "--out", str(out), "--device", "cpu"],
             "seed=0/pretrain was made with train.lr = 0.003, the sweep file says 0.05; a changed sweep needs "
             "another --out")
    assert _md5s(out) == before


@pytest.mark.integration
def test_a_shrunk_sweep_keeps_the_earlier_runs_in_the_status_and_the_table(tmp_path, capsys, finished_sweep):
    file, out = finished_sweep
    out = _copy(out, tmp_path / "out")
    shrunk = copy.deepcopy(TINY_SWEEP)
    shrunk["pretrain"]["axes"] = {"train.seed": [0]}
    shrunk_file = _write(tmp_path / "shrunk.json", shrunk)
    main(["sweep", str(shrunk_file), "--out", str(out), "--device", "cpu", "--quiet"])
    capsys.readouterr()
    main(["sweep", str(shrunk_file), "--out", str(out), "--status"])
    status = capsys.readouterr().out
    assert "2 runs: 2 done" in status and "2 more runs" in status
    assert "not in this sweep seed=1/pretrain" in status and "not in this sweep seed=1/grpo,from=8" in status
    table = pd.read_parquet(out / "results.parquet")
    files = table.groupby("run")["sweep_file"].first().to_dict()
    assert files["seed=0/pretrain"] == str(shrunk_file) and files["seed=1/pretrain"] == str(file)
    assert set(table[table["run"].str.startswith("seed=1")]["state"]) == {"done"}
    assert (table.groupby("run")["train.lr"].first() == 3e-3).all()  # read from each run's config.json


def test_a_million_run_grid_is_refused_in_seconds_with_its_count(tmp_path, refused):
    spec = copy.deepcopy(TINY_SWEEP)
    spec["pretrain"]["axes"] = {f"train.{name}": list(range(1, 11)) for name in
                                ("seed", "steps", "eval_every", "eval_samples", "save_every", "batch_size")}
    del spec["posttrain"]
    started = time.perf_counter()
    refused(["sweep", str(_write(tmp_path / "huge.json", spec)), "--out", str(tmp_path / "o")],
             "the sweep expands to 1,000,000 runs, more than the 10,000 allowed")
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "o").exists()


@pytest.mark.integration
def test_status_of_anything_but_a_sweep_directory_is_one_line(tmp_path, finished_sweep, refused):
    file, _ = finished_sweep
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "missing", tmp_path / "a_file", tmp_path / "empty"):
        refused(["sweep", str(file), "--out", str(out), "--status"], "is not a sweep directory")


@pytest.mark.integration
def test_damaged_metrics_are_reported_damaged_not_done(tmp_path, capsys, finished_sweep):
    file, out = finished_sweep
    out = _copy(out, tmp_path / "out")
    (out / "runs" / "seed=1" / "pretrain" / "metrics.jsonl").write_bytes(b"\x8f\x00garbage\xff\n" * 3)
    main(["sweep", str(file), "--out", str(out), "--status"])
    status = capsys.readouterr().out
    assert "damaged  seed=1/pretrain" in status and "metrics.jsonl, line 1" in status


def test_a_symlink_back_to_a_parent_adds_no_section(tmp_path):
    from rlntp.report import find_sections

    section = tmp_path / "all" / "fig1"
    section.mkdir(parents=True)
    (section / "report.json").write_text(json.dumps({"recipe": "fig1"}))
    (section / "loop").symlink_to(tmp_path / "all")
    assert find_sections(tmp_path / "all") == [section]


@pytest.mark.parametrize("text, expected", [
    (r"a \boxed{\boxed{x}} b", ("a", "x")),
    (r"steps \boxed{\frac{1}{2}}", ("steps", r"\frac{1}{2}")),
    (r"x \boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", ("x", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}")),
    (r"x \boxed{a \\}", ("x", "a \\\\")),
    (r"x \boxed{\{1, 2\}}", ("x", r"\{1, 2\}")),
    (r"first \boxed{1} then \boxed{2", None),
    (r"\boxed{1} and \boxed{ \boxed{2} }", (r"\boxed{1} and", "2")),
])
def test_the_final_box_of_a_solution(text, expected):
    from rlntp.tasks.math_text import split_math

    assert split_math(text) == expected


# --- hostile inputs, walked -----------------------------------------------------------------------------------

def _at(spec: dict, path: tuple, value) -> dict:
    spec = copy.deepcopy(spec)
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return spec


NOT_A_TABLE = [[], [1], "x", 3, 1.5, True]
NOT_A_LIST = [{}, "x", 3, True, {"a": [1]}]
HOSTILE_SWEEPS = (
    [(f"{'.'.join(p)} = {v!r}", _at(TINY_SWEEP, p, v)) for p in (
        ("pretrain",), ("pretrain", "task"), ("pretrain", "model"), ("pretrain", "train"), ("pretrain", "axes"),
        ("posttrain",), ("posttrain", "grpo"), ("posttrain", "grpo", "post"), ("posttrain", "grpo", "axes"),
        ("posttrain", "grpo", "where")) for v in NOT_A_TABLE]
    + [(f"{'.'.join(p)} = {v!r}", _at(TINY_SWEEP, p, v)) for p in (
        ("pretrain", "axes", "train.seed"), ("posttrain", "grpo", "from_steps"),
        ("posttrain", "grpo", "where", "task.p_cot")) for v in NOT_A_LIST + [[]]]
    + [(f"train.{k} = {v!r}", _at(TINY_SWEEP, ("pretrain", "train", k), v))
       for k in ("steps", "lr", "eval_every", "batch_size")
       for v in ("x", -1, [1], {"a": 1}, True, 2.5 if k != "lr" else "1e-3")]
    + [
        ("an unknown section", _at(TINY_SWEEP, ("extra",), {})),
        ("an unknown field", _at(TINY_SWEEP, ("pretrain", "train", "stepz"), 3)),
        ("an axis of an unknown section", _at(TINY_SWEEP, ("pretrain", "axes", "optim.lr"), [1e-3])),
        ("zipped axis of wrong arity", _at(TINY_SWEEP, ("pretrain", "axes", "task.d, train.steps"), [[4]])),
        ("a field in two axes", _at(TINY_SWEEP, ("pretrain", "axes", "train.seed, task.d"), [[1, 6]])),
        ("a value listed twice", _at(TINY_SWEEP, ("pretrain", "axes", "train.seed"), [0, 0])),
        ("from_steps not a checkpoint", _at(TINY_SWEEP, ("posttrain", "grpo", "from_steps"), [5])),
        ("a where no run matches", _at(TINY_SWEEP, ("posttrain", "grpo", "where"), {"task.p_cot": [0.9]})),
        ("a group named pretrain", _at(TINY_SWEEP, ("posttrain", "pretrain"), TINY_SWEEP["posttrain"]["grpo"])),
        ("a group name with a slash", _at(TINY_SWEEP, ("posttrain", "a/b"), TINY_SWEEP["posttrain"]["grpo"])),
        ("a device in the file", _at(TINY_SWEEP, ("pretrain", "train", "device"), "cuda")),
        ("a 300-byte group name", _at(TINY_SWEEP, ("posttrain", "g" * 300), TINY_SWEEP["posttrain"]["grpo"])),
        ("many one-value axes", _at(TINY_SWEEP, ("pretrain", "axes"), {
            "train.seed": [123456789], "train.lr": [0.00123456], "train.eval_every": [4], "train.eval_samples": [32],
            "train.save_every": [4], "train.batch_size": [16], "task.data": ["/" + "d" * 200]})),
        ("a huge grid", _at(TINY_SWEEP, ("pretrain", "axes"), {"train.seed": list(range(200)),
                                                             "train.steps": list(range(8, 108))})),
    ]
)
HOSTILE_TOML = [
    ("a date", "[pretrain]\ntask = { d = 4 }\n[pretrain.axes]\n'train.seed' = [2024-01-01]\n"),
    ("a time", "[pretrain]\ntrain = { steps = 07:32:00 }\n"),
    ("a datetime", "description = 1979-05-27T07:32:00Z\n[pretrain]\n"),
    ("not UTF-8", b"[pretrain]\ntask = { d = 4 }\n# \xff\xfe\n"),
    ("not TOML", "[pretrain\n"),
    ("an array at the top", "pretrain = [1, 2]\n"),
]


def test_hostile_sweep_files_are_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    counts = {"json": 0, "toml": 0}
    for name, spec in HOSTILE_SWEEPS:
        file = _write(tmp_path / "hostile.json", spec)
        out = tmp_path / "out"
        with pytest.raises(SystemExit) as exit_info:
            try:
                main(["sweep", str(file), "--out", str(out), "--device", "cpu", "--quiet"])
            except Exception as e:  # a traceback: name the case
                raise AssertionError(f"{name}: {type(e).__name__}: {e}") from e
            raise AssertionError(f"{name} was accepted")
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, (name, err)
        assert not out.exists(), name
        counts["json"] += 1
    for name, text in HOSTILE_TOML:
        file = tmp_path / "hostile.toml"
        file.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(SystemExit) as exit_info:
            main(["sweep", str(file), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, (name, err)
        assert not (tmp_path / "out").exists(), name
        counts["toml"] += 1
    print(f"\nhostile sweep files refused: {counts}")
    assert counts["json"] >= 80


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    main(["pretrain", "--d", "4", "--layers", "1", "--width", "16", "--heads", "2", "--steps", "2", "--batch-size", "8",
          "--eval-every", "2", "--save-every", "2", "--eval-samples", "8", "--device", "cpu", "--quiet",
          "--out", str(out)])
    return out


def _reproduction(root: Path) -> Path:
    section = root / "fig1"
    section.mkdir(parents=True)
    (section / "report.json").write_text(json.dumps({"recipe": "fig1", "order": 1}))
    (section / "summary.txt").write_text("a table\n")
    return root


def test_every_output_option_refuses_a_file_rlntp_did_not_write(tmp_path, tiny_run, tiny_model, refused):
    """Each output option against a user's file: one line, exit 2, the file unchanged, nothing left beside it."""
    from rlntp.llm.dataset import LLMDataConfig, make_dataset
    from rlntp.llm.tiny import gsm8k_records

    root = _reproduction(tmp_path / "all")
    records = tmp_path / "train.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_records(8)))
    make_dataset(LLMDataConfig(source=str(records), test_source=str(records), p_cot=0.5), tmp_path / "data")
    user = tmp_path / "user"
    user.mkdir()
    not_ours = "was not written by rlntp"
    cases = [
        (["report", str(root), "--out", str(user / "essay.txt")], user / "essay.txt", "name a .html file"),
        (["report", str(root), "--out", str(user / "page.html")], user / "page.html", not_ours),
        (["report", str(root)], root / "report.html", not_ours),
        (["plot", str(tiny_run), "--out", str(user / "mine.png")], user / "mine.png", not_ours),
        (["plot", str(tiny_run), "--out", str(user / "mine.jpg")], user / "mine.jpg", "name a .png file"),
        (["plot", str(tiny_run)], tiny_run / "plot.png", not_ours),
        (["llm", "eval", "--model", str(tiny_model), "--data", str(tmp_path / "data"), "--cpu", "--questions", "1",
          "--out", str(user / "notes.json")], user / "notes.json", not_ours),
        (["llm", "eval", "--model", str(tiny_model), "--data", str(tmp_path / "data"), "--cpu", "--questions", "1",
          "--out", str(user / "notes.txt")], user / "notes.txt", "name a .json file"),
        (["theory", "figure", "--out", str(user), "--steps", "2", "--rounds", "1"], user / "theorem1_pretraining.png",
         not_ours),
    ]
    for argv, target, message in cases:
        target.write_bytes(b"the user's own words\n")
        before = _md5s(target.parent)
        refused(argv, message)
        assert _md5s(target.parent) == before, argv
        target.unlink()
    refused(["report", str(root), "--out", str(user)], "is a directory; name the file to write")
    assert sorted(p.name for p in user.iterdir()) == []
    for argv, target, _ in (cases[1], cases[2], cases[3], cases[5]):  # where nothing is, or over its own file
        main(argv)
        main(argv)
        assert target.exists()
    print(f"\noutput options refused a user's file: {len(cases) + 1} cases")


@pytest.mark.integration
def test_a_ray_address_where_nothing_listens_is_one_line_and_leaves_nothing(tmp_path, finished_sweep, refused):
    pytest.importorskip("ray")
    file, _ = finished_sweep
    started = time.perf_counter()
    refused(["sweep", str(file), "--out", str(tmp_path / "out"), "--executor", "ray", "--address",
                      "127.0.0.1:9"], "cannot reach the Ray cluster at 127.0.0.1:9")
    assert time.perf_counter() - started < 30 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, content, message", [
    ("nums.jsonl", b'{"question": 1, "answer": null}\n', "record 1: 'question' is int, not text"),
    ("nulls.jsonl", b'{"question": "q", "answer": null}\n', "record 1: 'answer' is missing, not text"),
    ("empty.jsonl", b"", "holds no records"),
    ("broken.jsonl", b'{"question": "a", "answer": "b #### 1"\n', "line 1: not a JSON record"),
    ("binary.jsonl", b'\xff\xfe{"q"\n', "is not UTF-8 text (byte 0)"),
    ("garbage.parquet", bytes(range(200)), "is not a readable Parquet file"),
    ("object.json", b'{"question": "q"}', "must hold a JSON list of records"),
    ("pointer.jsonl", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "Git LFS pointer"),
])
def test_malformed_llm_records_are_one_line(tmp_path, name, content, message, refused):
    (tmp_path / name).write_bytes(content)
    refused(["llm", "data", "--source", str(tmp_path / name), "--out", str(tmp_path / "out")], message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    ("3 2 1 * 6 5 4||#### 8 8 0 6 5 0\r\n", "ends in a carriage return (Windows line ends)"),
    ("3 2 1 * 6 5 4||#### 8 8 0 6 5 0  \n", "ends in 2 space(s)"),
    ("\ufeff3 2 1 * 6 5 4||#### 8 8 0 6 5 0\n", "byte-order mark"),
])
def test_from_text_names_the_invisible_cause(tmp_path, content, message, refused):
    (tmp_path / "train.txt").write_bytes(content.encode())
    refused(["data", "mult", "--digits", "3", "--train", "1", "--valid", "1", "--test", "1", "--from-text",
                      f"train={tmp_path / 'train.txt'}", "--out", str(tmp_path / "out")], message)


def test_from_text_with_a_split_twice_is_refused(tmp_path, refused):
    refused(["data", "mult", "--from-text", "train=a.txt", "train=b.txt", "--out", str(tmp_path / "out")],
             "names the train split twice")


def test_a_model_with_pickled_weights_only_is_refused(tiny_model, tmp_path, refused):
    import shutil

    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model, pickled)
    weights = load_file(pickled / "model.safetensors")
    (pickled / "model.safetensors").unlink()
    torch.save(weights, pickled / "pytorch_model.bin")
    for argv in (["llm", "eval", "--model", str(pickled), "--data", str(tmp_path), "--out", str(tmp_path / "e.json")],
                 ["llm", "sft", "--model", str(pickled), "--data", str(tmp_path), "--cpu",
                  "--out", str(tmp_path / "s")]):
        err = refused(argv, "holds pickled weights only (pytorch_model.bin)")
        assert "weights_only" not in err and "--allow-pickle" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "e.json").exists()


def test_report_on_damaged_files_writes_the_page_with_notes(tmp_path):
    from rlntp.report import write_report

    root = _reproduction(tmp_path / "all")
    section = root / "fig1"
    (section / "summary.txt").write_bytes(b"\xff\xfe broken")
    (section / "sweep.json").write_bytes(b"\xff not json")
    (section / "status.json").write_text('{"runs": [1, 2]}')
    page = write_report(root).read_text()
    assert "summary.txt could not be read" in page and "sweep.json could not be read" in page
