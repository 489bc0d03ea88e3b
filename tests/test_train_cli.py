"""`python -m llm_lab train …`: submit and wait, estimate, export; the card's command parses back."""
import json
import shlex
import zipfile

from llm_lab.access import LOCAL
from llm_lab import cli, data, registry
from llm_lab.train.cli import config_from_args
from llm_lab.train import TrainConfig
from tests.test_train import sentiment_csv


def test_classify_from_the_command_line_then_export(tiny_bert, capsys, tmp_path):
    data.import_dataset(LOCAL, "sent", "s.csv", sentiment_csv())
    args = ["train", "classify", "--model", str(tiny_bert), "--data", "sent", "--epochs", "2", "--learning-rate",
            "0.02", "--name", "cli-clf"]
    assert cli.main(args + ["--estimate"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["steps"] == 24 and estimate["parameters"] == sum(  # 96 training rows / 8 → 12 steps × 2
        p.numel() for p in registry.load(LOCAL, str(tiny_bert), head="classifier").model.parameters())
    assert cli.main(args) == 0  # jobs run inline in tests; the CLI waits for the job
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "cli-clf" and result["metrics"]["eval_accuracy"] >= 0.9
    out = tmp_path / "m.zip"
    assert cli.main(["train", "export", "cli-clf", "--out", str(out)]) == 0
    names = zipfile.ZipFile(out).namelist()
    assert {"cli-clf/config.json", "cli-clf/model.safetensors", "cli-clf/README.md"} <= set(names)


def test_unknown_dataset_is_an_error_message(capsys):
    assert cli.main(["train", "classify", "--data", "nope"]) == 1
    assert "No dataset named 'nope'" in capsys.readouterr().err


def test_reproduce_command_parses_back_to_the_same_config():
    cfg = TrainConfig(task="causal-lm", model="tiny-gpt", dataset="demo-prompts", lora=True, lora_r=4,
                      lora_targets=["c_attn", "c_proj"], epochs=1.5, learning_rate=3e-4, name="x")
    words = shlex.split(cfg.to_cli())
    assert words[:5] == ["python", "-m", "llm_lab", "train", "causal-lm"]
    args = cli.build_parser().parse_args(words[3:])
    assert config_from_args(args, "causal-lm") == cfg
    pre = TrainConfig(task="pretrain", preset="10M", arch={"n_layer": 3}, epochs=8.0, batch_size=16,
                      learning_rate=2e-3, warmup=0.05, weight_decay=0.1, scheduler="cosine", eval_fraction=0.05)
    args = cli.build_parser().parse_args(shlex.split(pre.to_cli())[3:])
    assert config_from_args(args, "pretrain") == pre
