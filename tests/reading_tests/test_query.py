"""The results query (study.reading.query) against hand counts, the same through the CLI, the HTTP API and
the Python client; the compact default table; and fuzzed query input: every answer is a table or
one line per error (CLI exit 2, API 422), never a traceback or a 500.

The store holds a DUGD grid written as the coordinator writes it (TrackingWriter): T in {4, 8},
kappa in {10, 30}, n in {32, 64}, seeds {0, 1}, root_error = T/100 + kappa/1000 + n/10^4 +
seed/1000 (closed form, so every mean is known), plus one FAILED run at T = 16.
"""

from __future__ import annotations

import io
import itertools
import json
import os

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.reading import query

from study.reading import results
from study.client import ServiceError, StudyClient
from study.errors import StudyInputError
from study.spec.loading import load_sweep
from study.recording.writer import TrackingWriter
from tests.support import topology
from workers.result import Result

TOKEN = "query-token-77"
EXAMPLES = int(os.environ.get("STUDY_FUZZ_EXAMPLES", "300"))
SWEEP = """
name: grid-q
seeds: [0, 1]
parameters: {problem: dugd, T: [4, 8, 16], kappa: [10, 30], n: [32, 64], mode: eigen}
"""


def root_error(T: int, kappa: float, n: int, seed: int) -> float:
    return T / 100 + kappa / 1000 + n / 1e4 + seed / 1000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("query")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    previous = os.environ.get("STUDY_SPOOL_DIR")
    os.environ["STUDY_SPOOL_DIR"] = str(base / "spool")
    sweep = load_sweep(SWEEP)
    writer = TrackingWriter(sweep, uri)
    writer.start_sweep()
    for point in sweep.expand():
        p = point.params
        if p["T"] == 16:  # only one T=16 point is logged, and it failed
            if (p["kappa"], p["n"], p["seed"]) == (10.0, 32, 0):
                writer.log_run(Result(params=p, status="FAILED", reason="diverged").as_record(), point.run_key)
            continue
        value = root_error(p["T"], p["kappa"], p["n"], p["seed"])
        scalars = {"root_error": value, "rho_ratio": 1.0 + value, "mse_ratio": 1e-6 * (1 + p["seed"])}
        writer.log_run(Result(params=p, scalars=scalars).as_record(), point.run_key)
    writer.end_sweep("FINISHED", {})
    assert writer.close(60) and writer.rejected == []
    if previous is None:
        os.environ.pop("STUDY_SPOOL_DIR")
    else:
        os.environ["STUDY_SPOOL_DIR"] = previous
    return {"uri": uri, "base": base}


@pytest.fixture(scope="module")
def frame(store):
    return results.load_results("grid-q", store["uri"])


@pytest.fixture(scope="module")
def service(ray_local, store):
    address = ray_local.get_runtime_context().gcs_address
    managed, url = topology.start_study_serve("serve-query", store["base"], store["uri"], address, TOKEN)
    yield url
    managed.stop()


def ask(frame, group_by="", metric="", where="", runs=False):
    return query.answer(frame, query.parse_query(group_by, metric, where, runs))


# --- hand counts ------------------------------------------------------------------------------


def test_group_by_pools_over_n_and_says_so(frame):
    table = ask(frame, "T,kappa", "root_error").set_index(["T", "kappa"])
    assert len(frame) == 17 and list(table.index) == [(4, 10), (4, 30), (8, 10), (8, 30), (16, 10)]
    for T, kappa in itertools.product((4, 8), (10, 30)):
        values = [root_error(T, kappa, n, s) for n in (32, 64) for s in (0, 1)]
        row = table.loc[(T, kappa)]
        assert row["root_error_mean"] == pytest.approx(sum(values) / 4, abs=1e-12)
        assert row["root_error_count"] == 4 and row["failed"] == 0
    assert table.loc[(16, 10), "root_error_count"] == 0 and table.loc[(16, 10), "failed"] == 1
    assert set(table[query.POOLED_COLUMN]) == {"n (2 values)"}
    assert query.POOLED_COLUMN not in ask(frame, "T,kappa,n", "root_error").columns  # nothing left out


def test_where_selects_before_aggregating(frame):
    table = ask(frame, "T,kappa", "root_error", "n=64,mode=eigen").set_index(["T", "kappa"])
    assert list(table.index) == [(4, 10), (4, 30), (8, 10), (8, 30)]  # the failed run is n=32
    assert table["root_error_count"].tolist() == [2] * 4 and query.POOLED_COLUMN not in table.columns
    assert table.loc[(8, 30), "root_error_mean"] == pytest.approx(root_error(8, 30, 64, 0.5), abs=1e-12)
    above = ask(frame, "T", "root_error", "kappa>=30").set_index("T")
    assert above["root_error_count"].to_dict() == {4: 4, 8: 4} and set(above[query.POOLED_COLUMN]) == {"n (2 values)"}
    either = ask(frame, "T", "root_error", "n=32|64,T!=16")
    assert either["root_error_count"].tolist() == [8, 8] and either["failed"].tolist() == [0, 0]


def test_runs_lists_one_row_per_run(frame):
    rows = ask(frame, "", "root_error", "n=64,T=4", runs=True)
    assert list(rows.columns) == ["kappa", "seed", "root_error", "status", "reason", "run_id"]  # T, n fixed here
    assert rows[["kappa", "seed"]].values.tolist() == [[10, 0], [10, 1], [30, 0], [30, 1]]
    assert rows["root_error"].tolist() == pytest.approx([root_error(4, k, 64, s) for k in (10, 30) for s in (0, 1)])
    every = ask(frame, "", "root_error", runs=True)
    assert len(every) == 17 and list(every.columns[:4]) == ["T", "kappa", "n", "seed"]
    failed = every[every["status"] == "FAILED"]
    assert failed[["T", "reason"]].values.tolist() == [[16, "diverged"]]


BAD = {  # (group_by, metric, where, runs) -> the one error line, with API labels
    "repeated group_by": (("T,T", "root_error", "", False), "group_by: got 'T,T', expected each name once (T repeated)"),
    "repeated metric": (("T", "root_error,root_error", "", False),
                        "metric: got 'root_error,root_error', expected each name once (root_error repeated)"),
    "empty name": (("T,,kappa", "root_error", "", False), "group_by: got 'T,,kappa', expected comma-separated names (one of them is empty)"),
    "unknown axis": (("kapa", "root_error", "", False), "group_by: got 'kapa', expected a parameter of the sweep (did you mean kappa?)"),
    "metric as axis": (("root_error", "rho_ratio", "", False),
                       "group_by: got 'root_error', expected a parameter of the sweep (root_error is a result metric)"),
    "axis as metric": (("T", "kappa", "", False), "metric: got 'kappa', expected a result metric (kappa is a parameter)"),
    "malformed where": (("T", "root_error", "kappa>>3", False),
                        f"where: got 'kappa>>3', expected {query.WHERE_FORM}"),
    "value never taken": (("T", "root_error", "n=65", False), "where: got 'n=65', expected a value n takes in this sweep (32, 64)"),
    "text compared by order": (("T", "root_error", "mode>=3", False),
                               "where: got 'mode>=3', expected = or != for mode, which is not a number"),
    "selects nothing": (("T", "root_error", "kappa>=1000", False), "where: got 'kappa>=1000', which selects none of the sweep's 17 runs"),
    "runs with group_by": (("T", "root_error", "", True), "runs: got it with group_by 'T', expected no group_by (runs lists one row per run)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_query_input_is_one_line_naming_it(frame, case):
    (group_by, metric, where, runs), expected = BAD[case]
    with pytest.raises(StudyInputError) as raised:
        ask(frame, group_by, metric, where, runs)
    assert raised.value.errors == [expected]


def test_compact_cells_choose_digits_per_column(frame):
    parsed = query.parse_query("T", "root_error,mse_ratio", "n=64,kappa=30")
    cells = query.compact_cells(query.answer(frame, parsed), parsed)
    # root_error over seeds {0, 1}: std = 0.001/sqrt(2) = 0.00071 -> 5 decimals; mse_ratio is tiny: scientific.
    assert cells["root_error"].tolist() == ["0.07690 ± 0.00071 (2)", "0.11690 ± 0.00071 (2)"]
    assert cells["mse_ratio"].tolist() == ["1.50e-06 ± 7.1e-07 (2)"] * 2
    assert cells["T"].tolist() == ["4", "8"] and cells["failed"].tolist() == ["0", "0"]



def test_a_column_without_spread_gets_one_format():
    # tiny values: scientific with 4 significant digits (the report's Pareto front), never 7.17188e-05
    assert query.column_text([7.17188e-05, 1.2e-4, float("nan")]) == ["7.172e-05", "1.200e-04", "–"]
    assert query.column_text([0.123456, 0.5]) == ["0.1235", "0.5000"]  # four digits at the median's scale


# --- the same through the CLI, the API and the client ---------------------------------------------


def test_cli_api_and_client_agree_with_hand_counts(store, frame, service, run_cli):
    args = {"group_by": ["T", "kappa"], "metrics": ["root_error"], "where": "n=64"}
    direct = ask(frame, "T,kappa", "root_error", "n=64")
    with StudyClient(service, token=TOKEN) as client:
        over_http = pd.DataFrame(client.results("grid-q", **args))
        csv = pd.read_csv(io.StringIO(client.results("grid-q", fmt="csv", **args)))
        runs = pd.DataFrame(client.results("grid-q", metrics=["root_error"], where=["n=64", "T=4"], runs=True))
        pooled = pd.DataFrame(client.results("grid-q", group_by=["T"], metrics=["root_error"]))
        with pytest.raises(ServiceError) as refused:
            client.results("grid-q", group_by=["T", "T"], metrics=["root_error"])
    assert refused.value.status_code == 422 and refused.value.lines == [BAD["repeated group_by"][1]]
    pd.testing.assert_frame_equal(over_http, direct, check_dtype=False)
    pd.testing.assert_frame_equal(csv, direct, check_dtype=False)
    assert over_http["root_error_count"].tolist() == [2, 2, 2, 2]
    assert len(runs) == 4 and runs["kappa"].tolist() == [10, 10, 30, 30]
    assert set(pooled[query.POOLED_COLUMN]) == {"kappa (2 values), n (2 values)"}

    cli = ["results", "grid-q", "--group-by", "T,kappa", "--metric", "root_error", "--where", "n=64", "--format", "json"]
    local = run_cli(*cli, "--tracking-uri", store["uri"])
    remote = run_cli(*cli, "--server", service, env={"STUDY_API_TOKEN": TOKEN})
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    pd.testing.assert_frame_equal(pd.read_json(io.StringIO(local.stdout)), direct, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_json(io.StringIO(remote.stdout)), direct, check_dtype=False)
    listed = run_cli("results", "grid-q", "--runs", "--where", "n=64,T=4", "--format", "csv", "--tracking-uri", store["uri"])
    assert pd.read_csv(io.StringIO(listed.stdout))["seed"].tolist() == [0, 1, 0, 1]


def test_default_table_fits_100_columns_and_names_what_it_pooled(store, run_cli):
    done = run_cli("results", "grid-q", "--group-by", "T,kappa", "--metric", "root_error,rho_ratio,mse_ratio",
                   "--tracking-uri", store["uri"], env={"COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, done.stdout
    assert any(line.startswith("pooled over: n (2 values)") for line in lines), done.stdout
    assert "0.0553 ± 0.0019 (4)" in done.stdout  # T=4, kappa=10: mean and sample std of 4 closed-form values
    wide = run_cli("results", "grid-q", "--group-by", "T,kappa", "--metric", "root_error", "--wide", "--tracking-uri", store["uri"])
    assert wide.returncode == 0 and "root_error_mean" in wide.stdout and "pooled over: n (2 values)" in wide.stdout
    bad = run_cli("results", "grid-q", "--group-by", "T,T", "--tracking-uri", store["uri"])
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --group-by: got 'T,T', expected each name once (T repeated)"


# --- fuzzing ----------------------------------------------------------------------------------

NAMES = ["T", "kappa", "n", "seed", "mode", "problem", "root_error", "rho_ratio", "status", "reason", "run_id",
         "info.m", "bogus", "", " ", "T ", "x-y", "é", "0n"]
OPS = ["=", "==", "!=", "<", "<=", ">", ">=", "=>", "<>", "=<", "!", ""]
VALUES = ["4", "64", "30.0", "eigen", "FINISHED", "nan", "inf", "-1e999", "1_0", "x|y", "4|8", "|", "", "0x10", "true"]
name_lists = st.lists(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)), max_size=4).map(",".join)
clauses = st.tuples(st.sampled_from(NAMES), st.sampled_from(OPS), st.one_of(st.sampled_from(VALUES), st.text(max_size=6))).map("".join)
wheres = st.one_of(st.lists(clauses, max_size=3).map(",".join), st.text(max_size=20))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _answer_or_lines(frame, group_by, metric, where, runs) -> str:
    try:
        table = ask(frame, group_by, metric, where, runs)
    except StudyInputError as error:
        assert error.errors
        for line in error.errors:
            assert "\n" not in line and line.split(":")[0] in query.API_LABELS.values(), line
        return "refused"
    assert isinstance(table, pd.DataFrame)
    return "answered"


def test_fuzzed_queries_answer_or_refuse_in_one_line_each(frame):
    outcomes = {"answered": 0, "refused": 0}

    @FUZZ
    @given(name_lists, name_lists, wheres, st.booleans())
    def check(group_by, metric, where, runs):
        outcomes[_answer_or_lines(frame, group_by, metric, where, runs)] += 1

    check()
    assert outcomes["answered"] and outcomes["refused"], outcomes


def test_fuzzed_queries_over_http_are_never_500(frame, service):
    seen: set[int] = set()

    @settings(max_examples=max(EXAMPLES // 6, 20), deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(name_lists, max_size=2), st.lists(name_lists, max_size=2), st.lists(wheres, max_size=2),
           st.sampled_from(["true", "false", "1", "maybe", None]), st.sampled_from(["json", "csv", "xml"]))
    def check(group_by, metric, where, runs, fmt):
        params = {"group_by": group_by, "metric": metric, "where": where, "format": fmt, **({"runs": runs} if runs else {})}
        response = httpx.get(f"{service}/sweeps/grid-q/results", params=params, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        seen.add(response.status_code)
        assert response.status_code in (200, 422), (params, response.status_code, response.text[:300])
        if response.status_code == 422:
            detail = response.json()["detail"]
            assert detail and all(isinstance(line, str) and "\n" not in line for line in detail), detail
        else:
            expected = _answer_or_lines(frame, group_by, metric, where, runs in ("true", "1"))
            assert expected == "answered", params

    check()
    assert seen == {200, 422}, seen


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name_lists, name_lists, wheres)
def test_fuzzed_cli_queries_exit_0_or_2_without_traceback(store, frame, run_cli, group_by, metric, where):
    group_by, metric, where = (text.replace("\x00", "") for text in (group_by, metric, where))  # argv cannot carry NUL
    done = run_cli("results", "grid-q", "--group-by", group_by, "--metric", metric, "--where", where,
                   "--format", "json", "--tracking-uri", store["uri"], timeout=120)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.returncode in (0, 2), done.stderr[-2000:]
    if done.returncode == 2:
        assert all(line.startswith("error: --") for line in done.stderr.strip().splitlines()), done.stderr
    else:
        json.loads(done.stdout)
