"""Training recipes, each architecture's default loss, and the exponential schedule."""

from __future__ import annotations

import pytest
from helpers import flat_layout

from cloudfree.core.errors import UsageError
from cloudfree.inference.checkpoint import load_checkpoint
from cloudfree.training.loop import TrainConfig, learning_rate
from cloudfree.training.recipes import recipe, with_recipe


@pytest.mark.parametrize(("arch", "loss"), [("glfcr", "l1"), ("carf", "cloudaware"),
                                            ("ibhfn", "ibhfn"), ("dsen2cr", "carl"),
                                            ("sgbafm", "l1")])
def test_each_architecture_trains_with_its_own_loss_by_default(arch, loss):
    assert TrainConfig(arch=arch).loss == loss


def test_ibhfn_refuses_a_loss_that_drops_its_kl_and_gate():
    with pytest.raises(UsageError, match="ibhfn trains only with the ibhfn loss"):
        TrainConfig(arch="ibhfn", loss="l1")
    assert TrainConfig(arch="glfcr", loss="cloudaware").loss == "cloudaware"  # others may choose


def test_paper_recipes_hold_the_papers_settings():
    assert recipe("paper", "glfcr") == {"lr": 1e-4, "schedule": "step", "batch_size": 12,
                                        "epochs": 30, "crop": 128}
    assert recipe("paper", "carf") == {"lr": 1e-5, "schedule": "constant", "crop": 256}
    assert recipe("paper", "sgbafm") == {"lr": 1e-3, "schedule": "exponential", "decay": 0.8,
                                         "batch_size": 4, "epochs": 10, "crop": 256}
    with pytest.raises(UsageError, match="no paper recipe for ibhfn"):
        recipe("paper", "ibhfn")


def test_explicit_options_win_over_the_recipe():
    values = {"arch": "glfcr", "lr": 3e-4, "epochs": 2, "crop": 128, "batch_size": 4,
              "schedule": "cosine"}
    merged = with_recipe("paper", "glfcr", values, given={"arch", "epochs"})
    assert merged == {"arch": "glfcr", "lr": 1e-4, "epochs": 2, "crop": 128, "batch_size": 12,
                      "schedule": "step"}
    assert with_recipe(None, "glfcr", values, set()) is values


def test_schedules_per_epoch():
    per_epoch = 10
    expo = TrainConfig(arch="sgbafm", lr=1e-3, schedule="exponential", decay=0.8)
    step = TrainConfig(arch="glfcr", lr=1e-4, schedule="step")
    rates = [learning_rate(expo, e * per_epoch + 3, 1000, per_epoch) for e in range(4)]
    assert rates == pytest.approx([1e-3, 8e-4, 6.4e-4, 5.12e-4])
    assert [learning_rate(step, e * per_epoch, 1000, per_epoch) for e in (0, 4, 5, 10)] == \
        pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5])
    with pytest.raises(UsageError, match="decay must be in"):
        TrainConfig(schedule="exponential", decay=1.5)


def test_train_command_applies_the_recipe(tmp_path, cli):
    data, out = flat_layout(tmp_path / "data", 1), tmp_path / "run"
    result = cli("train", str(data), "--arch", "sgbafm", "--recipe", "paper",
                 "--epochs", "1", "--crop", "32", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    training = load_checkpoint(out / "last.pt").metadata["training"]
    assert (training["lr"], training["schedule"], training["decay"]) == (1e-3, "exponential", 0.8)
    assert (training["batch_size"], training["epochs"], training["crop"]) == (4, 1, 32)
    assert training["loss"] == "l1"
    result = cli("train", str(data), "--arch", "ibhfn", "--recipe", "paper",
                 "--out", str(tmp_path / "no"), "-q")
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith("Error: no paper recipe for ibhfn")
    assert "Traceback" not in result.output
