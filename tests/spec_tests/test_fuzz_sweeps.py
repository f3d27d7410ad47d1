"""Fuzzing sweep files (issue 7, R4): random YAML and JSON, wrong types, huge grids, NaN and Inf,
unicode keys, deep nesting, alias bombs, YAML tags. Every input either validates or is refused with
one line per error (StudyInputError in-process; exit code 2 and `error: ...` lines from the CLI),
never a traceback, and a refused sweep writes nothing to MLflow.

STUDY_FUZZ_EXAMPLES scales the in-process example counts (default 300 per strategy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.errors import StudyInputError
from study.spec.loading import MAX_DOCUMENT_DEPTH, MAX_GRID_RUNS, Sweep, load_sweep

EXAMPLES = int(os.environ.get("STUDY_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OUTCOMES: dict[str, int] = {"valid": 0, "refused": 0}  # tallied for benchmarks/README.md

# Keys a sweep or a run spec knows, so random documents often get deep into validation.
SWEEP_KEYS = ["name", "experiment", "method", "metric", "budget", "seeds", "parameters", "resources", "max_retries", "timeout_s"]
PARAM_KEYS = ["problem", "n", "m", "kappa", "T", "mode", "lr", "init", "spectrum", "x", "work_s", "fail", "omega", "fixed_point", "seed"]
PROBLEMS = ["dugd", "chgd", "psor", "probe"]
HUGE = st.sampled_from([10**40, -(10**40), 2**63, 2**64 + 1, 10**300])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), HUGE,
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(PROBLEMS + ["nan", "NaN", "inf", "-Infinity", "1e999", "random", "grid", "tpe", "eigen", "expected"]),
)
keys = st.one_of(st.sampled_from(SWEEP_KEYS + PARAM_KEYS), st.text(min_size=1, max_size=12))
anything = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=6)), max_leaves=30)
distributions = st.fixed_dictionaries(
    {"distribution": st.sampled_from(["uniform", "log_uniform", "int_uniform", "categorical", "normal"])},
    optional={"min": scalars, "max": scalars, "values": st.lists(scalars, max_size=4)},
)
parameter_values = st.one_of(scalars, st.lists(scalars, max_size=8), distributions, anything)
parameters = st.dictionaries(st.one_of(st.sampled_from(PARAM_KEYS), keys), parameter_values, max_size=7)
names = st.one_of(st.sampled_from(["ok", "a.b-c_1", "../../x", "..", "/etc/passwd", "a/b", "a\\b", "", "x" * 101, "ünï"]), st.text(max_size=12))
documents = st.fixed_dictionaries(
    {},
    optional={
        "name": names,
        "method": st.one_of(st.sampled_from(["grid", "random", "tpe", "cmaes", "bayes"]), scalars),
        "seeds": st.one_of(st.lists(st.one_of(st.integers(-3, 5), HUGE), max_size=5), scalars),
        "budget": st.one_of(st.fixed_dictionaries({"trials": st.one_of(st.integers(-2, 10), scalars)}), scalars),
        "metric": st.one_of(st.fixed_dictionaries({"name": scalars, "goal": st.sampled_from(["minimize", "maximize", "up"])}), scalars),
        "parameters": st.one_of(parameters, anything),
        "timeout_s": scalars,
        "max_retries": scalars,
        "resources": st.one_of(st.dictionaries(st.sampled_from(["num_cpus", "num_gpus", "memory"]), scalars, max_size=3), scalars),
    },
).flatmap(lambda doc: st.dictionaries(keys, anything, max_size=2).map(lambda extra: {**extra, **doc}))


def outcome(text: str) -> str:
    """load_sweep's answer: a valid sweep, or one line per error naming a key; nothing else."""
    try:
        sweep = load_sweep(text)
    except StudyInputError as error:
        assert error.errors, "a refusal must say why"
        for line in error.errors:
            assert line.strip() and "\n" not in line and "Traceback" not in line, line
            assert ":" in line, f"an error line names its key: {line!r}"
        OUTCOMES["refused"] += 1
        return "refused"
    assert isinstance(sweep, Sweep)
    assert sweep.total_runs <= MAX_GRID_RUNS or sweep.is_search
    if not sweep.is_search:
        assert len(sweep.expand()) == sweep.total_runs
    OUTCOMES["valid"] += 1
    return "valid"


def as_yaml(document: object) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def as_json(document: object) -> str:
    return json.dumps(document, allow_nan=True)  # NaN / Infinity literals: not JSON, but users write them


@FUZZ
@given(documents, st.booleans())
def test_random_documents_validate_or_are_refused_in_one_line_each(document, use_json):
    text = as_json(document) if use_json else as_yaml(document)
    if "\n" not in text:  # load_sweep reads one-line text without ':' as a path; make it text
        text += "\n"
    outcome(text)


def _axis(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(values, st.lists(values, min_size=1, max_size=4))


near_valid = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
        "parameters": st.one_of(
            st.fixed_dictionaries({"problem": st.just("probe")}, optional={
                "x": _axis(st.floats(-1e6, 1e6)), "work_s": _axis(st.sampled_from([0.0, 0.01])),
                "fail": _axis(st.sampled_from(["none", "raise", "nan"]))}),
            st.fixed_dictionaries({"problem": st.just("dugd")}, optional={
                "n": _axis(st.integers(2, 400)), "T": _axis(st.integers(1, 40)), "kappa": _axis(st.floats(1.01, 1e4)),
                "mode": _axis(st.sampled_from(["dense", "eigen", "expected"])), "lr": _axis(st.floats(1e-6, 10)),
                "init": _axis(st.one_of(st.floats(0.01, 1.0), st.just("random"))), "spectrum": st.sampled_from(["gaussian", "mp", "uniform", "loguniform"])}),
        ),
    },
    optional={"seeds": st.lists(st.integers(0, 1000), min_size=1, max_size=4, unique=True),
              "max_retries": st.integers(0, 5), "timeout_s": st.floats(0.1, 1e4), "experiment": st.text(min_size=1, max_size=30)},
)


def test_near_valid_documents_with_one_field_broken_validate_or_are_refused():
    """Valid sweeps with, most of the time, one field replaced by anything: both answers occur."""
    before = dict(OUTCOMES)

    @FUZZ
    @given(near_valid, st.one_of(st.none(), st.sampled_from(SWEEP_KEYS), st.sampled_from(PARAM_KEYS)), anything, st.booleans())
    def check(document, broken_key, value, use_json):
        if broken_key in PARAM_KEYS:
            document["parameters"][broken_key] = value
        elif broken_key is not None:
            document[broken_key] = value
        outcome((as_json(document) + "\n") if use_json else as_yaml(document))

    check()
    assert OUTCOMES["valid"] > before["valid"] and OUTCOMES["refused"] > before["refused"], OUTCOMES


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200), st.sampled_from(["", "name: a\n", "{", "- ", "name: a\nparameters:\n  "]))
def test_random_text_validates_or_is_refused(noise, head):
    outcome(head + noise + "\n")


TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:subprocess.check_call [[touch, '{marker}']]",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:argparse.Namespace {{x: 1}}",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
    "!!binary aGVsbG8=",
    "!!timestamp 2001-12-14",
    "!custom 1",
]


@settings(max_examples=60, deadline=None, database=None)
@given(st.sampled_from(TAGS), st.sampled_from(["name", "parameters", "parameters.x", "seeds"]))
def test_yaml_tags_never_construct_objects(tmp_path_factory, tag, where):
    marker = tmp_path_factory.mktemp("tag") / "constructed"
    value = tag.format(marker=marker)
    documents = {
        "name": f"name: {value}\nparameters: {{problem: probe}}\n",
        "parameters": f"name: a\nparameters: {value}\n",
        "parameters.x": f"name: a\nparameters:\n  problem: probe\n  x: {value}\n",
        "seeds": f"name: a\nseeds: {value}\nparameters: {{problem: probe}}\n",
    }
    answer = outcome(documents[where])  # YAML's own safe tags (!!binary, !!timestamp) may validate
    if "python" in tag or "custom" in tag:
        assert answer == "refused"
    assert not marker.exists()


def _bomb(levels: int, width: int = 10) -> str:
    lines = ["name: bomb", "parameters:", "  problem: probe", f"  a0: &a0 [{', '.join(['1'] * width)}]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_caps_refuse_huge_grids_alias_bombs_deep_nesting_and_oversized_ints():
    """Each cap exists and says what it is; each answer is quick (a bomb of 10^9 values too)."""
    import time

    cases = {
        "huge grid": ("name: big\nparameters: {problem: probe, x: %s, work_s: %s}\n" % (list(range(400)), [i / 1e3 for i in range(400)]),
                      f"parameters: got a grid of 160000 runs, expected at most {MAX_GRID_RUNS} (split the sweep)"),
        "alias bomb": (_bomb(9), "sweep file: got more than 1000000 values once YAML aliases are expanded, expected at most 1000000"),
        "deep nesting": ("name: a\nparameters: {problem: probe, x: " + "[" * 60 + "]" * 60 + "}\n",
                         f"sweep file: got values nested deeper than {MAX_DOCUMENT_DEPTH} levels, expected a flat sweep file"),
        "nesting past the stack": ("name: a\nparameters: " + "[" * 5000 + "]" * 5000 + "\n", "sweep file: unreadable YAML: nesting too deep"),
        "self alias": ("name: a\nparameters: {problem: probe, x: &l [1, *l]}\n",
                       "sweep file: got a YAML alias that refers to itself, expected a finite document"),
        "4301-digit int": ("name: a\nparameters: {problem: probe, x: " + "9" * 4301 + "}\n",
                           "sweep file: unreadable YAML: Exceeds the limit (4300 digits) for integer string conversion: value has 4301 digits"),
        "20000-bit int": ("name: a\nparameters: {problem: probe, x: 0x" + "f" * 5000 + "}\n", "parameters.x: got <int of 20000 bits>, expected a valid number"),
        "NaN as JSON": ('{"name": "a", "parameters": {"problem": "probe", "x": NaN}}', "parameters.x: got 'NaN', expected a finite number"),
        "Inf as YAML": ("name: a\nparameters: {problem: probe, x: [1, .inf]}\n", "parameters.x: got inf, expected a finite number"),
        "seed past 2**63": ("name: a\nseeds: [9223372036854775808]\nparameters: {problem: probe}\n",
                            "seeds: got [9223372036854775808], expected integers from 0 to 2**63 - 1"),
        "problem not a name": ("name: a\nparameters: {problem: [probe, dugd]}\n",
                               "parameters.problem: got ['probe', 'dugd'], expected one of dugd, chgd, psor, unrolling, lista, probe"),
    }
    for label, (text, expected) in cases.items():
        started = time.monotonic()
        try:
            load_sweep(text)
        except StudyInputError as error:
            assert error.errors == [expected], (label, error.errors)
        else:
            raise AssertionError(f"{label}: accepted")
        assert time.monotonic() - started < 5, label


def test_unicode_keys_are_named_in_the_error():
    try:
        load_sweep("name: a\nparameters: {problem: probe, ключ: 1, \U0001F600: [1, 2]}\n")
    except StudyInputError as error:
        assert [line.split(":")[0] for line in error.errors] == ["parameters.ключ", "parameters.\U0001F600"]
    else:
        raise AssertionError("unknown unicode keys accepted")


BAD_FILES = {
    "tag.yaml": "name: a\nparameters: !!python/object/apply:os.system ['touch {marker}']\n",
    "bomb.yaml": _bomb(9),
    "nan.json": '{"name": "a", "parameters": {"problem": "probe", "x": [0, NaN, Infinity]}}',
    "grid.yaml": "name: big\nparameters: {problem: probe, x: %s, work_s: %s}\n" % (list(range(400)), [i / 1e3 for i in range(400)]),
    "deep.yaml": "name: a\nparameters: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
}


def _assert_refused_by_cli(done, tmp_path: Path) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout and 'File "' not in done.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_cli_submit_refuses_bad_files_with_exit_2_and_writes_nothing(run_cli, tmp_path):
    marker = tmp_path / "constructed"
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name, text in BAD_FILES.items():
        (tmp_path / name).write_text(text.format(marker=marker) if name == "tag.yaml" else text)
        done = run_cli("submit", name, "--tracking-uri", store, timeout=120)
        _assert_refused_by_cli(done, tmp_path)
    assert not marker.exists()


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents)
def test_cli_validate_agrees_with_load_sweep_on_random_files(run_cli, tmp_path, document):
    text = as_yaml(document)
    (tmp_path / "random.yaml").write_text(text)
    expected = outcome(text if "\n" in text else text + "\n")
    done = run_cli("validate", "random.yaml", timeout=120)
    if expected == "valid":
        assert done.returncode == 0, done.stderr[-2000:]
    else:
        _assert_refused_by_cli(done, tmp_path)
