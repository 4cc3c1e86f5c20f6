"""The Python package against the `qrt` command on the default model: generate and stream give
what `qrt run` prints, plan() is `qrt plan --json`'s layers, perplexity() is `qrt perplexity`'s
figure, and bad inputs raise qrt.Error with the command's message."""

import json
import pathlib
import re

import numpy as np
import pytest

import qrt
from conftest import REPO, run_cli

PROMPT = "What is the capital of France?"


def test_version_is_the_project_version():
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert qrt.__version__ == re.search(r"project\(qrt\s+VERSION\s+([0-9.]+)", cmake).group(1)


def test_generate_equals_qrt_run(model, model_path, cli):
    text = model.generate(PROMPT, max_new_tokens=16, chat=True)
    assert "Paris" in text
    run = run_cli(cli, "run", "-m", model_path, "-p", PROMPT, "--chat", "-n", "16", "--device", "cpu")
    assert run.returncode == 0, run.stderr
    assert run.stdout == text + "\n"


def test_stream_pieces_add_up_to_generate(model):
    pieces = list(model.stream("The capital of France is", max_new_tokens=12))
    assert len(pieces) > 1 and all(pieces)
    assert "".join(pieces) == model.generate("The capital of France is", max_new_tokens=12)


def test_a_stream_left_early_frees_the_model(model):
    stream = model.stream("Once upon a time", max_new_tokens=32)
    next(stream)
    with pytest.raises(qrt.Error, match="in the middle of a stream"):
        model.generate("Hello", max_new_tokens=2)
    stream.close()
    assert model.generate("Hello", max_new_tokens=2)
    for _ in model.stream("Once upon a time", max_new_tokens=32):
        break
    # Nothing refers to that iterator any more: freeing it closed the stream.
    assert model.generate("Hello", max_new_tokens=2)


def test_sampling_is_seeded(model):
    args = dict(max_new_tokens=12, temperature=0.9, top_k=40, top_p=0.95)
    a = model.generate("Once upon a time", seed=1, **args)
    assert a == model.generate("Once upon a time", seed=1, **args)
    assert any(model.generate("Once upon a time", seed=s, **args) != a for s in range(2, 6))


def test_plan_is_qrt_plan_json(model, model_path, cli):
    plan = model.plan()
    assert plan and all(layer["choices"] for layer in plan)
    run = run_cli(cli, "plan", model_path, "--device", "cpu", "--json")
    assert run.returncode == 0, run.stderr
    cli_plan = json.loads(run.stdout)["layers"]
    # The package is built without CUDA (pyproject.toml); the command may have it. A backend absent
    # from one binary has another verdict there ("not built" against "runs on cuda"): those verdicts
    # are left out, everything else must be the same.
    def built_in_both(layers, other):
        absent = {v["backend"] for layer in layers + other for v in layer["verdicts"]
                  if v["reason"].startswith("not built in this binary")}
        return [dict(layer, verdicts=[v for v in layer["verdicts"] if v["backend"] not in absent])
                for layer in layers]
    assert built_in_both(plan, cli_plan) == built_in_both(cli_plan, plan)
    assert any(v["backend"] == "cpu_simd" for v in built_in_both(plan, cli_plan)[0]["verdicts"])


def test_perplexity_equals_qrt_perplexity(model, cli, tmp_path):
    text = (REPO / "tests" / "data" / "text" / "kjv_ruth_jonah.txt").read_text()[:1000]  # 3 windows of 64
    (tmp_path / "text.txt").write_text(text)
    ppl = model.perplexity(text, ctx=64)
    run = run_cli(cli, "perplexity", "-m", model.info()["path"], "-f", str(tmp_path / "text.txt"), "--ctx", "64",
                  "--device", "cpu")
    assert run.returncode == 0, run.stderr
    figure = re.search(r"PPL = ([0-9.]+)", run.stdout).group(1)
    assert f"{ppl:.4f}" == figure
    assert 1 < ppl < 100


def test_tokenizer_round_trip(model):
    ids = model.tokenizer.encode("Hello, world! Ünïcödé")
    assert all(isinstance(i, int) for i in ids)
    assert model.tokenizer.decode(ids) == "Hello, world! Ünïcödé"
    assert model.tokenizer.vocab_size == model.info()["vocab_size"]


def test_logits_match_the_last_position_of_a_longer_prompt(model):
    ids = model.tokenizer.encode("The capital of France is")
    logits = model.logits(ids)
    assert isinstance(logits, np.ndarray) and logits.dtype == np.float32
    assert logits.shape == (len(ids), model.tokenizer.vocab_size)
    assert np.all(np.isfinite(logits))
    # Greedy generation starts with the argmax after the prompt.
    first = model.tokenizer.decode([int(np.argmax(logits[-1]))])
    assert model.generate("The capital of France is", max_new_tokens=1) == first


def cli_error(cli, *args):
    run = run_cli(cli, *args)
    assert run.returncode != 0
    line = [l for l in run.stderr.splitlines() if l.startswith("qrt: error: ")][0]
    return line[len("qrt: error: "):]


def test_bad_paths_raise_the_commands_message(cli, tmp_path):
    for path in ["/nonexistent/model.gguf", str(REPO / "tests" / "data" / "bad" / "gguf_truncated.gguf"),
                 str(tmp_path)]:
        with pytest.raises(qrt.Error) as e:
            qrt.Model(path, device="cpu")
        assert str(e.value) == cli_error(cli, "run", "-m", path, "-p", "x", "--device", "cpu")


def test_bad_config_device_and_arguments_raise(model, model_path, tmp_path):
    with pytest.raises(qrt.Error, match="no_such_field"):
        qrt.Model(model_path, config={"no_such_field": 1})
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(qrt.Error, match="malformed JSON"):
        qrt.Model(model_path, config=bad)
    with pytest.raises(qrt.Error, match="no_such_backend"):
        qrt.Model(model_path, backend="no_such_backend")
    with pytest.raises(qrt.Error, match="tpu"):
        qrt.Model(model_path, device="tpu")
    with pytest.raises(qrt.Error, match="empty"):
        model.generate("")
    with pytest.raises(qrt.Error, match="max_new_tokens"):
        model.generate("Hello", max_new_tokens=-1)
    with pytest.raises(qrt.Error, match="top-p"):
        model.generate("Hello", temperature=1.0, top_p=0)
    with pytest.raises(qrt.Error, match="fewer than one window"):
        model.perplexity("Too short.", ctx=128)
    with pytest.raises(qrt.Error, match="vocab"):
        model.logits([model.tokenizer.vocab_size])
    with pytest.raises(qrt.Error):
        model.logits([])
    # The model still works after every refusal.
    assert model.generate("Hello", max_new_tokens=2)
