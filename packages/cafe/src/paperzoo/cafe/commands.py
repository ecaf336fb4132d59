"""The verbs of ``paperzoo-cafe``: attack, dlg, defend, sweep, demo, validate.

Each checks its arguments, calls ``pipeline``/``validation``, and writes ``metrics.json``,
``results.md`` and PNG figures under ``out``. The run settings are the dataclasses of
``config.py`` (``--scenario.n_samples 40``, ``--cafe.solver lstsq``,
``--scenario.defense.name fake``), shared with the Python API. Heavy modules load inside the
verbs, so ``--help`` never imports torch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from paperzoo.cafe.config import CafeConfig, DefenseConfig, Scenario, check_positive

SweepFactor = Literal["batch", "parties", "fl_lr", "defense"]
# Defaults of the nested options (never mutated: the verbs work on copies).
DIGITS_RUN = Scenario()
DEFENDED_RUN = Scenario(defense=DefenseConfig("fake"))
CAFE_DEFAULTS = CafeConfig()


def _scenario(value: Scenario | dict[str, Any], seed: int, **changes: Any) -> Scenario:
    scenario = value if isinstance(value, Scenario) else Scenario(**value)
    scenario = replace(scenario, seed=seed, **changes)
    scenario.check()
    return scenario


def _config(value: CafeConfig | dict[str, Any], seed: int, official: bool = False) -> CafeConfig:
    config = value if isinstance(value, CafeConfig) else CafeConfig(**value)
    if official:
        keep = {k: getattr(config, k) for k in ("solver", "loop", "label_mode", "index_aligned",
                                                  "data_range", "clamp_inputs")}
        return CafeConfig.official(**keep, seed=seed)
    return replace(config, seed=seed)


def _round(metrics: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in metrics.items()}


def _write(out: Path, metrics: dict[str, Any], rows: Sequence[dict[str, Any]] | None, title: str,
           notes: Sequence[str] = ()) -> dict[str, Any]:
    """Print every warning, write metrics.json and results.md (warnings under the table)."""
    from paperzoo.core.results import TABLE_FILE, atomic_write_text, write_results

    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    metrics = _round(metrics)
    write_results(out, metrics, rows, title=title)
    if notes:
        table = (out / TABLE_FILE).read_text()
        atomic_write_text(out / TABLE_FILE, table.rstrip("\n") + "\n\n## Warnings\n\n"
                          + "".join(f"- {note}\n" for note in notes))
    return metrics


def _report(result, out: Path, title: str) -> dict[str, Any]:
    """Print the data range the attacker used, then write the result with its warnings."""
    if result.data_range is not None:
        print(f"data range used: [{result.data_range[0]:g}, {result.data_range[1]:g}]", file=sys.stderr)
    return _write(out, result.metrics, None, title, result.warnings)


def _threads(threads: int):
    """One torch thread unless ``--threads`` says otherwise (the tiny models run fastest so,
    and the numbers do not depend on the machine's core count)."""
    from paperzoo.core.runtime import torch_threads

    return torch_threads(threads or 1)


def attack(
    out: Path,
    scenario: Scenario = DIGITS_RUN,
    cafe: CafeConfig = CAFE_DEFAULTS,
    iters: int = 3000,
    official: bool = False,
    threads: int = 0,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run CAFE on a VFL run and score the recovered samples and labels.

    Args:
        scenario: the VFL run: dataset (digits, mnist, cifar10, linnaeus5 or npz:FILE), parties,
            n_samples (N), batch_size (K), model, fl_lr (0 = frozen), defense, weights.
        cafe: the attack: solver (gd or lstsq), loop, label_mode, data_range (unset: from the
            data), clamp_inputs, learning rates and loss weights.
        iters: attack iterations = observed training rounds.
        official: use the official code's loss weights and learning rates.
        threads: torch CPU threads (0: one thread).
    """
    from paperzoo.cafe.pipeline import run_cafe
    from paperzoo.cafe.plots import save_recon_grid

    check_positive(iters=iters)
    scenario, config = _scenario(scenario, seed), _config(cafe, seed, official)
    with _threads(threads):
        result = run_cafe(scenario, iters=iters, config=config, device=device)
    save_recon_grid(out / "recon.png", {"true": result.x_true, "CAFE": result.x_hat}, data_range=result.data_range,
                    title=f"CAFE {scenario.dataset}, {scenario.parties} parties, N={scenario.n_samples}, "
                          f"K={scenario.batch_size}, fl_lr={scenario.fl_lr:g}, defence={scenario.defense.name}")
    return _report(result, out, f"CAFE attack ({config.solver}, {config.loop} loop, {iters} iterations, "
                                f"fl_lr {scenario.fl_lr:g})")


def dlg(
    out: Path,
    scenario: Scenario = DIGITS_RUN,
    restarts: int = 2,
    iters: int = 300,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
    cost: Literal["l2", "cosine"] = "l2",
    threads: int = 0,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run the DLG baseline on the first round of a VFL run, scored after Hungarian matching.

    Args:
        scenario: the VFL run (as for attack); batch_size is the size of the attacked round.
        restarts: random restarts (the lowest matching cost is kept).
        iters: optimiser iterations per restart.
        optimizer: lbfgs (as DLG) or adam.
        cost: l2 or cosine gradient distance.
        threads: torch CPU threads (0: one thread).
    """
    from paperzoo.cafe.pipeline import run_dlg
    from paperzoo.cafe.plots import save_recon_grid

    check_positive(restarts=restarts, iters=iters)
    scenario = _scenario(scenario, seed)
    with _threads(threads):
        result = run_dlg(scenario, restarts=restarts, iters=iters, optimizer=optimizer, cost=cost, device=device)
    save_recon_grid(out / "recon.png", {"true": result.x_true, "DLG": result.x_hat}, data_range=result.data_range,
                    title=f"DLG ({optimizer}, {restarts} restarts x {iters}), Hungarian-matched")
    return _report(result, out, "DLG baseline")


def defend(
    out: Path,
    scenario: Scenario = DEFENDED_RUN,
    epochs: int = 20,
    train_batch_size: int = 40,
    train_lr: float = 0.05,
    attack_iters: int = 3000,
    threads: int = 0,
    seed: int = 0,
    device: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Measure a defence: VFL test accuracy when trained with it, beside the undefended model,
    and CAFE's PSNR against it.

    Args:
        scenario: the attacked VFL run; scenario.defense is the defence measured (name and
            knobs), scenario.dataset/parties/image_size also set the utility training.
        epochs: training epochs of the utility run.
        train_batch_size: batch size of the utility run (the global batch under DDP).
        train_lr: SGD learning rate of the utility run.
        attack_iters: CAFE iterations against the defence (0 skips the attack).
        threads: torch CPU threads (0: one thread).
        resume: continue the interrupted run in --out from its last checkpoint (same options).
    """
    from paperzoo.cafe.pipeline import run_cafe, run_utility
    from paperzoo.cafe.plots import save_recon_grid
    from paperzoo.core.lightning import CHECKPOINT_DIR
    from paperzoo.core.runtime import secondary_rank

    check_positive(epochs=epochs, train_batch_size=train_batch_size)
    if attack_iters < 0:
        raise ValueError(f"attack_iters must be >= 0 (0 skips the attack), got {attack_iters}")
    scenario = _scenario(scenario, seed)
    defense = scenario.defense
    common = dict(dataset=scenario.dataset, root=scenario.root, parties=scenario.parties, epochs=epochs,
                  batch_size=train_batch_size, seed=seed, image_size=scenario.image_size, device=device,
                  lr=train_lr, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision)
    checkpoints = out / CHECKPOINT_DIR  # one folder per training: clean, then defended
    with _threads(threads):
        clean = run_utility(defense="none", resume_dir=str(checkpoints / "clean"), resume=resume, **common)
        defended = run_utility(defense=defense, save_path=str(out / "vfl_model.safetensors"),
                               resume_dir=str(checkpoints / "defended"), resume=resume, **common)
        metrics: dict[str, Any] = {"clean_acc": clean.test_acc, "defended_acc": defended.test_acc,
                                   "acc_cost": clean.test_acc - defended.test_acc}
        notes: list[str] = []
        if defense.name == "dp":
            metrics.update(_dp_epsilon(defense, defended))
            if "dp_epsilon" in metrics:
                notes.append(DP_EPSILON_NOTE)
        # The attack runs on one device, outside Lightning: under DDP only rank 0 runs it (another
        # rank's outputs go to a temporary folder that is deleted, so its attack would be wasted).
        if attack_iters > 0 and secondary_rank() is None:
            result = run_cafe(scenario, iters=attack_iters, device=device)
            metrics.update({f"attack_{k}": v for k, v in result.metrics.items()})
            notes = notes + result.warnings
            save_recon_grid(out / "recon.png", {"true": result.x_true, f"CAFE vs {defense.name}": result.x_hat},
                            data_range=result.data_range)
    return _write(out, metrics, None, f"Defence {defense.name} {defense.options()}", notes)


DP_EPSILON_NOTE = ("dp_epsilon is nominal (dp_epsilon_per_sample_valid = 0): opacus' RDP accountant at the "
                   "noise multiplier and sample rate B/N as for per-sample DP-SGD, but clip-and-noise clips "
                   "each party's whole batch-mean upload, so it is not a per-sample guarantee")


def _dp_epsilon(defense: DefenseConfig, run) -> dict[str, float]:
    """Epsilon (delta 1e-5) of the utility run's uploads from opacus' RDP accountant, if installed.

    Nominal: the accountant assumes per-sample clipping (DP-SGD) at sample rate B/N, while the
    defence clips each party's whole batch-mean upload; ``dp_epsilon_per_sample_valid`` is 0."""
    from paperzoo.cafe.defenses import ClipAndNoise

    try:
        epsilon = ClipAndNoise(defense.clip, defense.noise_multiplier).epsilon(run.steps, run.sample_rate)
    except ImportError:
        return {}
    return {"dp_epsilon": epsilon, "dp_delta": 1e-5, "dp_epsilon_per_sample_valid": 0}


def _workers(workers: int) -> int:
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = one per core), got {workers}")
    from paperzoo.cafe.pipeline import default_workers

    return default_workers() if workers == 0 else workers


def sweep(
    out: Path,
    what: SweepFactor = "fl_lr",
    values: list[float] | None = None,
    iters: int = 3000,
    n_samples: int = 80,
    batch_size: int = 40,
    utility_epochs: int = 20,
    workers: int = 0,
    cache: str | None = None,
    job_timeout_s: float = 3600.0,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Sweep one factor on digits: batch size, party count, training lr, or the defences
    (privacy/utility plot).

    Args:
        what: the factor to sweep.
        values: its values (defaults: batch 10 20 40; parties 2 4 8; fl_lr 0 1e-3 5e-3 5e-2).
        iters: CAFE iterations per run.
        n_samples: N.
        batch_size: K (when not swept).
        utility_epochs: training epochs of each defence's utility run.
        workers: parallel single-threaded processes (0 = one per core; 1 = all in this process).
        cache: folder that keeps every finished run (joblib), so an interrupted sweep resumes;
            keyed also by the package's version and source. It holds pickles: use only a
            folder you wrote.
        job_timeout_s: the longest one run may take in a worker process (not applied with one
            worker); a run that fails or runs longer is recorded (jobs_failed, a row and a
            warning naming it, its numbers null), the others are written, and the command exits
            with status 2 after writing them.
    """
    from paperzoo.cafe.plots import save_curve_plot, save_tradeoff_plot
    from paperzoo.cafe.validation import defense_sweep, factor_sweep
    from paperzoo.core.jobs import check_timeout

    check_timeout(job_timeout_s)
    workers = _workers(workers)
    if what == "defense":
        result = defense_sweep(iters, utility_epochs, workers, seed, cache_dir=cache, device=device,
                               job_timeout_s=job_timeout_s)
        save_tradeoff_plot(out / "tradeoff.png", result.points)
        title = "Defence sweep (digits, 4 parties, N=80, K=40)"
    else:
        result = factor_sweep(what, values, iters, n_samples, batch_size, workers, seed, cache_dir=cache,
                              device=device, job_timeout_s=job_timeout_s)
        runs = [r for r in result.rows if "error" not in r]  # one per value; failed jobs have NaN
        save_curve_plot(out / f"sweep_{what}.png", [r[what] for r in runs],
                        {"CAFE": [r["psnr_db"] for r in runs]}, xlabel=what, logx=what == "fl_lr",
                        title=f"CAFE vs {what} (digits, {iters} iterations)")
        title = f"CAFE sweep over {what}"
    metrics = _write(out, result.metrics, result.rows, title, result.warnings)
    _raise_on_failures(result, out)
    return metrics


def _raise_on_failures(result, out: Path) -> None:
    """After the results are written: exit status 2 naming every failed job, if any failed."""
    if result.failed:
        raise ValueError(f"{len(result.failed)} job(s) failed ("
                         + "; ".join(f"{f.name}: {(f.reason.splitlines() or [''])[0]}" for f in result.failed)
                         + f"); the other runs' metrics written to {out / 'metrics.json'}")


def demo(out: Path, iters: int = 800, threads: int = 0, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """CAFE end to end on digits (4 parties, N = 40, K = 20, frozen model) beside DLG.

    Args:
        iters: CAFE iterations.
        threads: torch CPU threads (0: one thread).
    """
    from paperzoo.cafe.pipeline import run_cafe, run_dlg
    from paperzoo.cafe.plots import save_recon_grid

    check_positive(iters=iters)
    scenario = Scenario(n_samples=40, batch_size=20, seed=seed)
    with _threads(threads):
        cafe = run_cafe(scenario, iters=iters, device=device)
        baseline = run_dlg(scenario, restarts=1, iters=100, device=device)
    mc, md = cafe.metrics, baseline.metrics
    metrics = {"cafe_psnr_db": mc["psnr_db"], "cafe_share_above_20db": mc["share_above_20db"],
               "cafe_label_acc": mc["label_acc"], "cafe_ssim": mc["ssim"], "dlg_psnr_db": md["psnr_db"],
               "gap_db": mc["psnr_db"] - md["psnr_db"]}
    save_recon_grid(out / "recon.png", {"true": cafe.x_true, "CAFE": cafe.x_hat},
                    title=f"CAFE on digits: {metrics['cafe_psnr_db']:.1f} dB")
    rows = [{"attack": "CAFE", "psnr_db": mc["psnr_db"], "label_acc": mc["label_acc"]},
            {"attack": "DLG (Hungarian-matched)", "psnr_db": md["psnr_db"], "label_acc": md["label_acc"]}]
    return _write(out, metrics, rows, "CAFE demo (digits, 4 parties, N=40, K=20)", cafe.warnings)


def validate(
    out: Path,
    iters: int = 3000,
    dlg_iters: int = 300,
    dlg_restarts: int = 2,
    utility_epochs: int = 20,
    workers: int = 0,
    cache: str | None = None,
    job_timeout_s: float = 3600.0,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """The spec's validation (E1-E5) on digits: CAFE vs DLG, ablations, defences with their
    accuracy cost, and the training-lr regime.

    Args:
        iters: CAFE iterations per run (the spec: 3000).
        dlg_iters: L-BFGS iterations per DLG restart (the spec: 300).
        dlg_restarts: DLG restarts (the spec: 2).
        utility_epochs: training epochs of each utility run.
        workers: parallel single-threaded processes (0 = one per core; 1 = all in this process).
        cache: folder that keeps every finished run (joblib), so an interrupted validation
            resumes where it stopped; keyed also by the package's version and source. It holds
            pickles: use only a folder you wrote.
        job_timeout_s: the longest one run may take in a worker process (not applied with one
            worker); a run that fails or runs longer is recorded (jobs_failed, a row and a
            warning naming it, its metrics null, the pass flags that read it false), the others
            are written, and the command exits with status 2 after writing them.
    """
    from paperzoo.cafe.plots import save_validation_figures
    from paperzoo.cafe.validation import run_validation
    from paperzoo.core.jobs import check_timeout

    check_timeout(job_timeout_s)
    result = run_validation(iters, dlg_iters, dlg_restarts, utility_epochs, _workers(workers), seed,
                            cache_dir=cache, device=device, job_timeout_s=job_timeout_s)
    save_validation_figures(out, result)
    metrics = _write(out, result.metrics, result.rows, "CAFE validation (digits, 4 parties, N=80, K=40)",
                     result.warnings)
    _raise_on_failures(result, out)
    return metrics
