"""Configuration of the validation experiment, importable without torch (the CLI's ``--help``
builds from it): the arms, the tasks and :class:`ValidationConfig` (spec section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from paperzoo.core.registry import fill_preset

ARMS = ("ce", "kd", "rco_eeis", "rco_greedy", "rco_reverse", "kd_best_mid", "rco_eeis2", "rco_eeis8")
# The default run: the arms the pass criteria name; the other three are opt-in because all eight
# over 10 seeds and both tasks do not fit the ten-minute budget on two cores.
REQUIRED_ARMS = ("ce", "kd", "rco_eeis", "rco_greedy", "rco_reverse")
TASKS = ("digits", "gauss")

# "spec": section 4's recipe; "reduced": its test-suite version (10 teacher and student epochs).
VALIDATION_PRESETS = {
    "spec": {"teacher_epochs": 60, "student_epochs": 60},
    "reduced": {"teacher_epochs": 10, "student_epochs": 10},
}


@dataclass(frozen=True)
class ValidationConfig:
    """Everything one seed's job needs (spec section 4). ``preset`` fills the epoch counts left
    unset; explicit values win (``ValidationConfig(preset="reduced", student_epochs=20)``).

    Args:
        preset: spec (60 teacher / 60 student epochs) or reduced (10 / 10).
        teacher_epochs: teacher epochs, one route checkpoint each.
        student_epochs: student epochs of every arm.
        tau: KD temperature of every distilling arm.
        alpha: KD weight of the soft term (the ce arm uses 0).
        eeis_anchors: m of the rco_eeis and rco_reverse arms.
        greedy_mu: mu of the rco_greedy arm.
        greedy_max_anchors: anchor cap of the rco_greedy arm.
        lr: SGD learning rate of teacher and students (momentum 0.9).
        weight_decay: SGD weight decay.
        batch_size: training batch size.
        arms: the arms to run (kd is required: every paired difference is against it).
    """

    preset: str = "spec"
    teacher_epochs: int | None = None
    student_epochs: int | None = None
    tau: float = 4.0
    alpha: float = 0.9
    eeis_anchors: int = 4
    greedy_mu: float = 1.5
    greedy_max_anchors: int = 6
    lr: float = 0.05
    weight_decay: float = 5e-4
    batch_size: int = 64
    arms: tuple[str, ...] = REQUIRED_ARMS

    def __post_init__(self) -> None:
        fill_preset(self, VALIDATION_PRESETS)
        object.__setattr__(self, "arms", tuple(self.arms))
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
        if "kd" not in self.arms:
            raise ValueError(f"arms must include kd (every paired difference is against KD), "
                             f"got {list(self.arms)}")
        if self.teacher_epochs < 1 or self.student_epochs < 1:
            raise ValueError(f"teacher_epochs and student_epochs must be >= 1, got "
                             f"{self.teacher_epochs} and {self.student_epochs}")
