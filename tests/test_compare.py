"""grukit compare (quick mode) and grukit gates: well-formed outputs, gate values equal the float64 reference."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

import grukit  # noqa: E402
from grukit import reference  # noqa: E402
from grukit.apps.cli import main  # noqa: E402
from grukit.apps.datasets import tokenize  # noqa: E402
from grukit.apps.studies import compare, gates  # noqa: E402


def _png_size(path):
    import matplotlib.image

    return matplotlib.image.imread(path).shape


def test_matched_parameter_counts():
    target = compare.recurrent_parameters("gru-after", 64, 64)
    for kind in compare.KINDS:
        hidden = compare.matched_hidden(kind, 64, target)
        count = compare.recurrent_parameters(kind, 64, hidden)
        assert abs(count - target) / target < 0.04, (kind, hidden, count, target)
    assert compare.matched_hidden("lstm", 64, target) < 64 < compare.matched_hidden("rnn", 64, target)
    gru = grukit.GRU(64, 64)
    assert sum(p.numel() for p in gru.parameters()) == target


@pytest.mark.slow
def test_compare_quick_writes_table_and_plots(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--quick", "--out", str(out)]) == 0
    text = (out / "COMPARISON.md").read_text()
    for label in compare.LABELS.values():
        assert label in text
    assert "| gates | 0 | 3 | 2 | 2 | 2 |" in text and "| memory cell | no | yes | no | no | no |" in text
    assert "## Long-range memory: the adding problem and the copy task" in text  # both sections, in order
    assert text.index("## The GRU-vs-LSTM table") < text.index("## Long-range memory")
    results = json.loads((out / "results.json").read_text())
    assert len(results["tasks"]) == 2 * 2 * len(compare.KINDS) and set(results["flow"]) == {"rnn", "lstm", "gru"}
    for name in ("memory_loss_curves.png", "sentiment_loss.png", "gradient_flow.png"):
        height, width = _png_size(out / name)[:2]  # a PNG that matplotlib reads back, not empty
        assert height > 100 and width > 100


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("update_gate", ["keeps_state", "takes_candidate"])
def test_gate_values_equal_the_float64_reference(reset_after, update_gate):
    torch.manual_seed(0)
    gru = grukit.GRU(5, 7, num_layers=2, reset_after=reset_after, update_gate=update_gate)
    x = torch.randn(9, 5)
    for layer in (0, 1):
        got = gates.gate_values(gru, x, layer)
        layer_input = x.double().numpy()[:, None]
        if layer:
            with torch.no_grad():
                layer_input = (
                    grukit.gru(
                        x.unsqueeze(1), gru.layer_weights()[:1], reset_after=reset_after, update_gate=update_gate
                    )[0]
                    .double()
                    .numpy()
                )
        w = [
            getattr(gru, f"{n}_l{layer}").detach().double().numpy()
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        hs, cache = reference.gru_forward(
            layer_input, np.zeros((1, 7)), *w, reset_after=reset_after, update_gate=update_gate
        )
        for key in ("z", "r"):
            want = np.stack([getattr(s, key)[0] for s in cache.steps])
            np.testing.assert_allclose(got[key], want, atol=1e-5)
        np.testing.assert_allclose(got["h"], hs[:, 0], atol=1e-5)


class _Tokens(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tokens, self.inside = [], False

    def handle_starttag(self, tag, attrs):
        self.inside = tag == "span" and ("class", "tok") in attrs

    def handle_data(self, data):
        if self.inside:
            self.tokens.append(data)
            self.inside = False


@pytest.mark.slow
def test_gates_command_writes_png_and_html_for_both_kinds_of_model(tmp_path, capsys):
    model = str(tmp_path / "s.pt")
    assert main(["train", "sentiment", "--epochs", "1", "--limit", "300", "--quiet", "--output", model]) == 0
    sentence = "The jokes land but the ending is a dull mess"
    assert main(["gates", model, sentence, "--out", str(tmp_path / "g")]) == 0
    assert "share of the old state kept" in capsys.readouterr().out
    page = (tmp_path / "g.html").read_text()
    parser = _Tokens()
    parser.feed(page)
    assert [t.replace("(?)", "") for t in parser.tokens] == tokenize(sentence)
    assert "mean z =" in page and "data:image/png;base64," in page
    height, width = _png_size(tmp_path / "g.png")[:2]
    assert height > 100 and width > 100
    weather = str(tmp_path / "w.pt")
    assert main(["train", "weather", "--epochs", "1", "--limit", "100", "--quiet", "--output", weather]) == 0
    assert main(["gates", weather, "--days", "20", "--out", str(tmp_path / "w")]) == 0
    parser = _Tokens()
    parser.feed((tmp_path / "w.html").read_text())
    assert len(parser.tokens) == 20 and parser.tokens[-1] == "12-31"
