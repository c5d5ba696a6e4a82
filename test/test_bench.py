"""`policy-xai bench attribution --quick`: runs, prints every row, the load and the goals."""
import json

import pytest

from policy_xai.attribution import METHODS
from policy_xai.attribution.engine import EXPLAINER_METHODS
from policy_xai.attribution.graph import METHODS as GRAPH_METHODS
from policy_xai.cli import main


@pytest.mark.timeout(240)
def test_bench_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "attribution", "--quick", "--json", str(out), "--models", "robomimic_bc",
                 "--model-width", "8", "--model-image", "32"]) == 0
    text = capsys.readouterr().out
    assert "load average" in text
    refs = [f"{m} (ref)" for m in METHODS if m not in EXPLAINER_METHODS]
    rows = ["forward", "forward+backward", *METHODS, *refs, "dtd_bf16", "captum_lrp", "captum_gbp",
            "captum_layergradcam"]
    for r in rows:
        assert any(line.startswith(r + " ") for line in text.splitlines()), r
    assert "goals (issue 2" in text and "dtd <= 3x forward+backward" in text
    assert "dtd <= 1.5x forward+backward (issue 11)" in text and "dtd: graph / reference <= 1.1" in text
    data = json.loads(out.read_text())
    case, model_case = data["results"]
    assert model_case["spec"].startswith("robomimic_bc") and model_case["batch"] == 1
    assert {r["row"] for r in model_case["rows"]} == {"forward", "forward+backward", *GRAPH_METHODS}
    ref = {r["row"]: r for r in case["rows"]}["dtd (ref)"]
    assert ref["reference_of"] == "dtd" and ref["vs_ours"] > 0
    assert (case["spec"], case["batch"], case["threads"]) == ("small", 1, 1)
    by = {r["row"]: r for r in case["rows"]}
    assert set(by) == set(rows)
    assert all(r["ms"] > 0 for r in by.values())
    assert by["forward+backward"]["x_fwd_bwd"] == pytest.approx(1.0)
    # captum's LRP ran on a copy with a SpatialSoftmax rule, which captum drops after every call
    assert case["captum_model_intact"] and case["captum_rule_drops"] == case["captum_lrp_calls"] > 0
    # our conserving softmax rule passes all relevance; captum's gradient passage essentially none
    assert by["dtd"]["softmax_pass"] == pytest.approx(1.0, rel=1e-3)
    assert abs(by["captum_lrp"]["softmax_pass"]) < 1e-3
    assert 0 < by["dtd"]["img_share"] < 1
    assert len(data["machine"]["loadavg_before"]) == 3
