import json


def test_run_one_probe_prints_json(run_cli):
    done = run_cli("run-one", "problem=probe", "x=3", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "FINISHED"
    assert result["value"] == 4.0


def test_run_one_bad_input_is_one_line_exit_2(run_cli):
    done = run_cli("run-one", "problem=dugd", "T=0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: T: got 0, expected greater than or equal to 1"]


def test_run_one_unknown_key(run_cli):
    done = run_cli("run-one", "problem=dugd", "bogus=1")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: bogus: unknown key (value 1)"


def test_run_one_nan_is_failed_with_reason(run_cli):
    done = run_cli("run-one", "problem=probe", "fail=nan", "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["status"] == "FAILED" and "non-finite" in result["reason"]


def test_run_one_unrolling_by_named_step_and_bad_step(run_cli):
    done = run_cli("run-one", "problem=unrolling", "n=40", "iterations=60", "step=1.9/L", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "FINISHED" and abs(result["step_times_lambda_max"] - 1.9) < 1e-12
    assert result["burn_in_length"] > 0 and len(result["jacobian_ratio"]) == 61
    bad = run_cli("run-one", "problem=unrolling", "step=2.5")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[0].startswith("error: step: got 2.5")
