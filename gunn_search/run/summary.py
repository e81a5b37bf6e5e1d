"""What `gunn-search --dry-run` prints: the space in words, every searched dimension with its
distribution, and a few sampled configs with their prices. In run/, not space/: it says what
GPUs a trial would get here (gunn_search.run.resources)."""

from __future__ import annotations

from gunn_search.run import resources
from gunn_search.space import distributions as dist
from gunn_search.space.budget import min_costs
from gunn_search.space.sample import example_configs
from gunn_search.space.extract import reachable_N, short_list
from gunn_search.space.schema import Space, fingerprint


def summarize(space: Space) -> str:
    """A multi-line human summary of the space."""
    b, se, rs = space.base, space.search, space.resources
    d, m = b.data, b.model
    lines = [f"search space {space.name!r}" + (f" ({space.source})" if space.source else ""),
             f"  fingerprint {fingerprint(space)[:16]}"]
    fraction = f"train_fraction={d.train_fraction:g}, " if d.train_fraction < 1 else ""
    lines.append(f"data: {d.name}, data_dir={d.data_dir}, val_fraction={d.val_fraction:g}, "
                 f"{fraction}split_seed={d.split_seed}, download={d.download}")
    if m.name is None:
        lines.append(f"model: stem {m.stem} ({m.stem_channels} channels), head "
                     f"{m.head_channels or 'none'}, projection {m.projection}, gunn_mode {m.gunn_mode}"
                     + ("" if m.residual else ", residual False (NoRes)"))
        for i, form in enumerate(space.stage_forms):
            p = f"model.stages.{i}"
            if form == "n":
                Ns = sorted({a * c for a in dist.values(space.dims[f"{p}.n"])
                             for c in dist.values(space.dims[f"{p}.P"])})
                note = f"N = n*P in [{Ns[0]}, {Ns[-1]}]"
            else:
                reach = reachable_N(space.dims[f"{p}.N"], space.dims[f"{p}.P"])
                note = f"N among {short_list(reach, 8)}; P among the divisors of N"
            lines.append(f"  stage {i}: {note}")
    fixed = [(k, v) for k, v in (("epochs", b.epochs), ("batch_size", b.batch_size),
                                 ("schedule.kind", b.schedule.kind), ("optim.lr", b.optim.lr),
                                 ("optim.momentum", b.optim.momentum),
                                 ("optim.weight_decay", b.optim.weight_decay), ("seed", b.seed))
             if k not in space.dims]
    lines.append("training: " + ", ".join(f"{k} {dist.fmt(v)}" for k, v in fixed)
                 + " (and the searched dimensions below)")
    sampler = {"tpe": "Optuna TPE", "nsga2": "Optuna NSGA-II", "random": "random"}[se.sampler]
    stopping = (f"ASHA grace_period {se.grace_period}, reduction_factor {se.reduction_factor}, "
                f"max_t {space.max_epochs}" if se.scheduler == "asha"
                else f"FIFO (every trial trains {space.max_epochs} epochs)")
    lines.append(f"search: {sampler} (seed {se.seed}), {trials_of(se)}, {se.max_concurrent} "
                 f"at a time; {stopping}; metric {se.metric} ({se.mode})")
    lines.append(f"resources per trial: {rs.cpus_per_trial:g} CPU; GPU: "
                 + resources.describe(rs.gpus_per_trial, resources.local_gpu_count(),
                                      se.max_concurrent)
                 + (" [on this machine; with --address, the cluster's GPUs decide]"
                    if rs.gpus_per_trial == resources.AUTO else ""))
    lo = min_costs(space)
    limits = [f"params <= {space.budget.max_params:,}"] if space.budget.max_params else []
    limits += [f"MACs <= {space.budget.max_macs:,}"] if space.budget.max_macs else []
    lines.append(f"budget: {' and '.join(limits) or 'none'}; smallest configuration: "
                 f"{lo.params:,} params, {lo.macs:,} MACs" + ("" if lo.exact else " (heuristic)"))
    searched = space.searched()
    lines.append(f"searched dimensions ({len(searched)}):")
    width = max((len(p) for p in searched), default=0)
    for path, d in searched.items():
        lines.append(f"  {path:<{width}}  {dist.describe(d)}")
    return "\n".join(lines)


def examples(space: Space, n: int = 5) -> str:
    """``n`` sampled configs, one per line: the searched values and the price."""
    searched = [p for p in space.searched() if not p.endswith((".n", ".N", ".P"))]
    lines = []
    for v in example_configs(space, n=n if space.searched() else 1, seed=space.search.seed):
        stages = " ".join(f"{{{v[f'model.stages.{i}.N']},{v[f'model.stages.{i}.P']}}}"
                          for i in range(len(space.stage_forms)))
        rest = "  ".join(f"{p}={dist.fmt(_round(v[p]))}" for p in searched)
        flag = "" if v.get("budget_ok", True) else "  [over budget: would be rejected]"
        lines.append(f"  {stages}  {rest}  params={v['cost.params']:,}  "
                     f"MACs={v['cost.macs']:,}{flag}".replace("    ", "  "))
    return "\n".join(lines)


def _round(v):
    return float(f"{v:.4g}") if isinstance(v, float) else v


def trials_of(se) -> str:
    """"32 trials", or under a compute budget "trials until 120 epochs, 2h are spent (at most
    32)"."""
    from gunn_search.space.compute_limits import UNBOUNDED

    if not se.has_budget:
        return f"{se.num_samples} trials"
    limits = [f"{se.budget_epochs:g} epochs" if se.budget_epochs else "",
              se.time_budget or "",
              f"{se.budget_gpu_hours:g} GPU-hours" if se.budget_gpu_hours else ""]
    out = f"trials until {', '.join(x for x in limits if x)} are spent"
    return out + (f" (at most {se.num_samples})" if se.num_samples < UNBOUNDED else "")
