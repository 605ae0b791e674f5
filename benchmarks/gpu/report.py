"""The markdown summary of a :mod:`benchmarks.gpu.check` run."""

from __future__ import annotations

from typing import Any


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "0" if v == 0 else (f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.4g}")
    return str(v)


def markdown(report: dict[str, Any], throughput_md: str | None) -> str:
    env, parts = report.get("env") or {}, report["parts"]
    name = env.get("device", {}).get("name", report["device"])
    lines = [f"# GPU check: {name} ({report['device']}{', tiny' if report['tiny'] else ''})", "",
             f"`{report['command']}`; {report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget.", "",
             "| part | seconds | CPU seconds (with children) | status |", "|---|---|---|---|"]
    lines += [f"| {p} | {v['seconds']:.1f} | {v['cpu_seconds']:.1f} | {v['status']} |" for p, v in parts.items()]
    if env:
        v, c = env["versions"], env["cuda"]
        lines += ["", "## Environment", "",
                  ", ".join(f"{k} {v[k]}" for k in ("python", "jax", "jaxlib", "flax", "optax", "torch", "numpy",
                                                    "dm_pix", "pytorch_msssim") if k in v)
                  + f"; torch CUDA {c['torch_cuda']}, cuDNN {c['torch_cudnn']}"
                  + "".join(f", {k} {val}" for k, val in sorted(c["jax_plugins"].items())) + ".", ""]
        cp = env["cpu_only_paths"]
        lines.append(f"CPU-only paths at batch {cp['batch_size']}, {cp['image_size']}x{cp['image_size']}: loop "
                     f"primitives {cp['loop_primitives']} -> **{'off' if cp['off'] else 'ON'}** ({cp['note']}). "
                     f"rasterio imported by the trainer's modules: {env['rasterio_imported_by_trainer']}.")
    par = report.get("parity")
    if par:
        rows = par["rows"]
        failed = [r for r in rows if not r["pass"]]
        lines += ["", f"## Parity, TF32 off on both sides ({len(rows) - len(failed)}/{len(rows)} rows pass)", "",
                  f"JAX `default_matmul_precision('highest')`, torch on `{par['settings']['torch_device']}` with "
                  "`allow_tf32=False` (matmul and cuDNN). Then the forward at default precision (info).", "",
                  "| check | quantity | tolerance | observed | pass |", "|---|---|---|---|---|"]
        for r in rows + par["default_precision_rows"]:
            status = "info" if r.get("info") else ("yes" if r["pass"] else "**NO**")
            cells = [r["check"], r["quantity"], r["tolerance"], _fmt(r["observed"]), status]
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    e2e = report.get("e2e")
    if e2e:
        lines += ["", "## End to end", "", f"`{e2e['command']}`: {e2e['steps']} steps ({e2e['epochs']} epochs x "
                  f"{e2e['steps_per_epoch']}) at batch {e2e['batch_size']}, **{e2e['images_per_second']:.1f} "
                  f"images/s**, **{e2e['data_wait_fraction']:.1%}** of train time waiting for data "
                  f"({e2e['wall_seconds']:.0f} s in all, start-up and data generation included). {e2e['note']}.", "",
                  "| epoch | images/s | data wait | epoch s | train loss | val loss |", "|---|---|---|---|---|---|"]
        lines += [f"| {e['epoch']} | {e['train_images_per_second']:.1f} | {e['train_data_wait_fraction']:.1%} "
                  f"| {e['epoch_seconds']:.1f} | {e['train_loss']:.4f} | {e['val_loss']:.4f} |"
                  for e in e2e["per_epoch"]]
    if throughput_md:
        lines += ["", "## Throughput", ""] + ["#" + ln if ln.startswith("#") else ln
                                              for ln in throughput_md.splitlines()[1:]]
    errors = {p: v["error"] for p, v in parts.items() if v.get("error")}
    if errors:
        lines += ["", "## Errors", ""] + [f"- {p}: `{e.strip().splitlines()[-1]}`" for p, e in errors.items()]
    return "\n".join(lines) + "\n"
