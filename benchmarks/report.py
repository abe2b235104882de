"""The targets of issue 12 checked against a run, and the run as markdown for ``docs/PERFORMANCE.md``.

:func:`render` turns a report (the JSON ``make bench`` writes) into the generated block;
:func:`update_doc` replaces the text between :data:`BEGIN` and :data:`END` in the document,
leaving the hand-written text around it alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def _num(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float | int):
        return f"{v:,.{nd}f}" if isinstance(v, float) or nd else f"{v:,}"
    return str(v)


def _ok(section: Any) -> bool:
    return section is not None and not (isinstance(section, dict) and "error" in section)


def _size_names(report: dict[str, Any]) -> tuple[str, str]:
    sizes = report["preset"]["http_sizes"]
    return f"{sizes[0][0]}x{sizes[0][1]}", f"{sizes[-1][0]}x{sizes[-1][1]}"


def _closed(rows: list[dict[str, Any]], photo: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["photo"] == photo and r["mode"] == "closed"]


def _best(rows: list[dict[str, Any]], photo: str) -> float | None:
    values = [r["images_per_s"] for r in _closed(rows, photo)]
    return max(values) if values else None


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 12 with the measured value and whether it is met (``None``: not measured)."""
    out: list[dict[str, Any]] = []

    def add(target: str, goal: str, measured: float | None, met: bool | None, detail: str = "") -> None:
        out.append(
            {
                "target": target,
                "goal": goal,
                "measured": None if measured is None else round(measured, 2),
                "met": met,
                "detail": detail,
            }
        )

    small, large = _size_names(report)
    http = report.get("http") if _ok(report.get("http")) else {}
    servers = (http or {}).get("servers", {})
    ours, base = servers.get("authlens", []), servers.get("baseline", [])
    best, best_base = _best(ours, small), _best(base, small)
    ceiling = report.get("ceiling") if _ok(report.get("ceiling")) else []
    ceil = next((r["overlapped"]["photos_per_s"] for r in ceiling or [] if r["photo"] == small), None)

    ratio = best / ceil if best is not None and ceil else None
    add(f"{small} end to end vs in-process ceiling", ">= 0.8", ratio, None if ratio is None else ratio >= 0.8,
        f"{_num(best)} vs {_num(ceil)} photos/s")  # fmt: skip
    ratio = best / best_base if best is not None and best_base else None
    add(f"{small} end to end vs naive baseline", ">= 5x", ratio, None if ratio is None else ratio >= 5,
        f"{_num(best)} vs {_num(best_base)} photos/s")  # fmt: skip
    half = next((r for r in ours if r["mode"] == "half_load"), None)
    ratio = half["p99_ms"] / half["p50_ms"] if half and half["p50_ms"] else None
    add("p99 / p50 at half of max throughput", "<= 3", ratio, None if ratio is None else ratio <= 3,
        f"p50 {_num(half['p50_ms'])} ms, p99 {_num(half['p99_ms'])} ms at {_num(half['rate_per_s'])}/s" if half else "")  # fmt: skip
    one = {r["photo"]: r["p50_ms"] for r in ours if r["mode"] == "closed" and r["concurrency"] == 1}
    ratio = one[large] / one[small] if one.get(small) and one.get(large) else None
    add(f"{large} vs {small} single-photo p50 (1 client)", "<= 2x", ratio, None if ratio is None else ratio <= 2,
        f"{_num(one.get(large))} vs {_num(one.get(small))} ms" if ratio else "")  # fmt: skip
    model = report.get("model") if _ok(report.get("model")) else None
    graph = (model or {}).get("graphs", {}).get("bundle")
    big = max(report["preset"]["model_batches"])
    speedup = graph.get(f"int8_speedup_batch{big}") if graph else None
    accuracy = (model or {}).get("int8_accuracy")
    loss = accuracy["auc_loss"] if accuracy else None
    met = None if speedup is None else speedup >= 2 and (loss is None or loss <= 0.005)
    add(f"INT8 vs fp32 model only, batch {big}", ">= 2x, ROC-AUC loss <= 0.005", speedup, met,
        "ROC-AUC loss " + (_num(loss, 4) if loss is not None else "not measured (no INT8 in the bundle)"))  # fmt: skip
    cold = report.get("cold_start") if _ok(report.get("cold_start")) else {}
    ours_cold = (cold or {}).get("authlens", {})
    value = ours_cold.get("cold_start_s")
    add("cold start (process start to /readyz)", "<= 2 s", value, None if value is None else value <= 2)
    value = ours_cold.get("peak_rss_mb")
    add("server peak RSS", "<= 400 MB", value, None if value is None else value <= 400,
        "" if report.get("subject", {}).get("origin") == "bundle" else "stand-in bundle")  # fmt: skip
    return out


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    return [_row(header), _row(marks), *(_row(r) for r in rows), ""]


def _error(name: str, section: Any) -> list[str] | None:
    if section is None:
        return [f"_{name}: not run._", ""]
    if isinstance(section, dict) and "error" in section:
        text = " ".join(str(section["error"]).split())
        text = text if len(text) <= 300 else text[:150] + " … " + text[-150:]
        return [f"_{name} failed (full message in the JSON): `{text.replace('`', chr(39))}`_", ""]
    return None


def _model_lines(report: dict[str, Any]) -> list[str]:
    lines = ["**1. Model only** (median ms per batch and photos/s; same inputs, one thread per core)", ""]
    section: Any = report.get("model")
    err = _error("model", section)
    if err:
        return lines + err
    batches = section["batches"]
    big = max(batches)
    header = ["graph", "engine"]
    for b in batches:
        header += [f"batch {b} ms", f"batch {b} photos/s"]
    header += [f"1 thread ms/photo (b{big})", f"vs eager (b{big})"]
    rows = []
    for name, g in section["graphs"].items():
        label = f"{name} ({g['backbone_passes']} backbone pass{'es' if g['backbone_passes'] > 1 else ''})"
        eager = g["engines"]["pytorch_eager"][f"batch{big}_ms"]
        for engine, e in g["engines"].items():
            cells: list[Any] = [label, engine.replace("_", " ")]
            for b in batches:
                cells += [_num(e[f"batch{b}_ms"]), _num(e[f"batch{b}_photos_per_s"])]
            cells += [_num(e.get("one_thread_ms_per_photo"), 2), f"{eager / e[f'batch{big}_ms']:.2f}x"]
            rows.append(cells)
    lines += _table(header, rows, "ll" + "r" * (len(header) - 2))
    notes = []
    for name, g in section["graphs"].items():
        note = f"{name}: INT8 {g[f'int8_speedup_batch{big}']}x fp32 at batch {big} (INT8 {g['int8_source']}); eager weights {g['eager_weights']}"
        if "parity_eager_vs_ort_fp32" in g:
            note += f", max |p eager - p ORT| {g['parity_eager_vs_ort_fp32']:.1e}"
        notes.append(note)
    acc = section.get("int8_accuracy")
    notes.append(
        f"INT8 ROC-AUC {acc['roc_auc_int8']:.4f} vs fp32 {acc['roc_auc_fp32']:.4f} on {acc['evaluation_images']} held-out photos ({acc['source']})"
        if acc
        else "INT8 accuracy: not measured (the bundle has no INT8 graph)"
    )
    return [*lines, *(f"- {n}" for n in notes), ""]


def _decode_lines(report: dict[str, Any]) -> list[str]:
    lines = ["**2. Decode and preprocess** (median ms on one thread)", ""]
    section: Any = report.get("decode")
    err = _error("decode", section)
    if err:
        return lines + err
    rows = [
        [
            r["photo"], _num(r["megapixels"]), _num(r["bytes"] / 1e3, 0), _num(r["full_decode_ms"]),
            _num(r["draft_decode_ms"]) if r["format"] == "JPEG" else "–",
            "x".join(map(str, r["draft_decoded_size"])), _num(r["resize_ms"], 2), _num(r["prepare_ms"]),
            f"{r['speedup']}x" if r["format"] == "JPEG" else "–",
        ]
        for r in section
    ]  # fmt: skip
    header = [
        "photo",
        "MP",
        "kB",
        "full decode",
        "reduced decode",
        "decoded at",
        "resize",
        "prepare (served)",
        "full / reduced",
    ]
    return lines + _table(header, rows)


def _ceiling_lines(report: dict[str, Any]) -> list[str]:
    lines = ["**3. In-process ceiling** (served predictor, no HTTP; photos/s)", ""]
    section: Any = report.get("ceiling")
    err = _error("ceiling", section)
    if err:
        return lines + err
    rows = []
    for r in section:
        best = r["overlapped"]
        split = ", ".join(f"{g['ort_threads']}/{g['decoders']}: {_num(g['photos_per_s'])}" for g in r["grid"])
        rows.append(
            [
                r["photo"], _num(best["photos_per_s"]), f"{best['ort_threads']}/{best['decoders']}", split,
                _num(r["sequential"]["photos_per_s"]), _num(r.get("prepare_ms")),
                _num(r.get("model_ms_one_thread_fp32"), 2), _num(r.get("compute_limit_fp32")),
                _num(r.get("compute_limit_int8")),
            ]
        )  # fmt: skip
    header = [
        "photo", "overlapped (best)", "ORT/decode threads", "all splits", "sequential", "prepare ms",
        "model ms/photo (1 thread)", "compute limit fp32", "compute limit INT8",
    ]  # fmt: skip
    return [
        *lines,
        *_table(header, rows, "lrrlrrrrr"),
        f"- model batches up to {section[0]['batch'] if section else '?'}; sequential: decode a batch on every core, "
        "then run it; compute limit = cores x 1000 / (prepare ms + model ms per photo on one thread)",
        "",
    ]


def _http_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        "**4. End to end over HTTP on loopback** (closed loop unless noted; latency of answered requests)",
        "",
    ]
    section: Any = report.get("http")
    err = _error("http", section)
    if err:
        return lines + err
    rows = []
    cpu = []
    for server, runs in section["servers"].items():
        for r in runs:
            mode = {"closed": f"{r['concurrency']} client{'s' if r['concurrency'] > 1 else ''}", "half_load": f"open loop {r['rate_per_s']}/s (half max)",
                    "batch": f"batch of {r['batch']}, 1 client"}[r["mode"]]  # fmt: skip
            answered = r["requests_ok"] > 0
            lat = [_num(r[k]) if answered else "–" for k in ("p50_ms", "p95_ms", "p99_ms")]
            rows.append(
                [
                    server,
                    r["photo"],
                    mode,
                    _num(r["images_per_s"]),
                    *lat,
                    r["refused"],
                    r["errors"] + r.get("image_errors", 0),
                    r.get("unfinished", 0),
                    _num(r.get("server_peak_rss_mb"), 0),
                ]
            )
            cpu.append(r["client"]["cores"])
    header = [
        "server",
        "photo",
        "load",
        "photos/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "refused",
        "errors",
        "unfinished",
        "server peak MB",
    ]
    client = section["servers"]["authlens"][0]["client"] if section["servers"].get("authlens") else {}
    lines += _table(header, rows, "lll" + "r" * 8)
    if cpu:
        lines += [
            f"- load generator: one process pinned to core {client.get('pinned_cpu')} ({client.get('event_loop')}), "
            f"{min(cpu):.2f}-{max(cpu):.2f} of a core while running (its CPU comes out of the servers' cores)",
            "",
        ]
    return lines


def _cold_lines(report: dict[str, Any]) -> list[str]:
    lines = ["**5. Cold start and memory**", ""]
    section: Any = report.get("cold_start")
    err = _error("cold_start", section)
    if err:
        return lines + err
    rows = [
        [
            server, _num(c["cold_start_s"], 2), ", ".join(f"{v:.2f}" for v in c["cold_start_samples_s"]),
            _num(c["rss_ready_mb"], 0), _num(c.get("rss_after_runs_mb"), 0), _num(c["peak_rss_mb"], 0),
            c.get("peak_rss_run") or "–",
        ]
        for server, c in section.items()
    ]  # fmt: skip
    header = ["server", "start to /readyz s (median)", "samples s", "RSS ready MB", "RSS after runs MB",
              "peak RSS MB", "peak during"]  # fmt: skip
    return lines + _table(header, rows, "lrrrrrl")


def _training_lines(report: dict[str, Any]) -> list[str]:
    lines = ["**6. Training** (train_one_epoch: augmenting loader, forward, backward, AdamW, EMA)", ""]
    section: Any = report.get("training")
    err = _error("training", section)
    if err:
        return lines + err
    rows = [
        [Path(r["config"]).name, r["data"], f"{r['image_size']} px", r["batch_size"], _num(r["photos_per_s"]), _num(r["step_s"], 2),
         f"{r['threads']} threads, {r['loader_workers']} loader workers, cache {'on' if r['decoded_cache'] else 'off'}"]
        for r in section
    ]  # fmt: skip
    return lines + _table(
        ["config", "photos", "input", "batch", "photos/s", "s/step", "runtime"], rows, "llrrrrl"
    )


def render(report: dict[str, Any], *, source: str) -> str:
    """The generated block of ``docs/PERFORMANCE.md`` for ``report`` (markers included)."""
    m = report["machine"]
    s = report.get("subject", {})
    c = report["contention"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    lines = [
        BEGIN,
        f"_Generated by `make bench` (preset `{report['preset']['name']}`) on {report['date']} in "
        f"{report['duration_s']:.0f} s; figures: `{source}`. Do not edit between the markers._",
        "",
        f"- **Machine** `{m['label']}`: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"{m['memory_gb']} GB, {m['os']}, Python {m['python']}; {libs}.",
        f"- **Bundle** `{s.get('name')}` {s.get('version')} (`{str(s.get('sha256', ''))[:12]}`): {s.get('note')}; "
        f"input {s.get('input', ['?'])[0]} px, draft size {s.get('draft_size')}, {s.get('flags')} flags.",
    ]
    if c["quiet"]:
        lines.append(
            f"- **CPU**: quiet: other processes used {c['other_cores_mean']:.2f} cores on average "
            f"(at most {c['other_cores_worst_section']:.2f} in a section)."
        )
    else:
        top = "; ".join(
            f"pid {p['pid']} (nice {p['nice']}) {p['cores']:.2f} cores `{p['command'][:60]}`"
            for p in c["top_other_processes"][:3]
        )
        lines.append(
            f"- **CPU: NOT QUIET, figures distorted**: other processes used {c['other_cores_mean']:.2f} of "
            f"{m['cores']} cores on average, {c['other_cores_worst_section']:.2f} in the worst section "
            f"(load average {c['loadavg_start'][0]} at start). Top: {top or 'short-lived processes'}."
        )
    lines += ["", "**Targets** (issue 12)", ""]
    lines += _table(
        ["target", "goal", "measured", "met", "detail"],
        [
            [t["target"], t["goal"], _num(t["measured"], 2),
             {True: "yes", False: "**no**", None: "–"}[t["met"]], t["detail"]]
            for t in report.get("targets", [])
        ],
        "llrll",
    )  # fmt: skip
    lines += _model_lines(report)
    lines += _decode_lines(report)
    lines += _ceiling_lines(report)
    lines += _http_lines(report)
    lines += _cold_lines(report)
    lines += _training_lines(report)
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in report.get("section_seconds", {}).items())
    lines += [f"_Section times: {secs}._", END]
    return "\n".join(lines)


def update_doc(path: Path, block: str) -> None:
    """Replace the generated block of ``path`` (create the file, or append the block, if needed)."""
    if not path.exists():
        path.write_text(f"# Performance\n\n{block}\n", encoding="utf-8")
        return
    text = path.read_text(encoding="utf-8")
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(head + block + tail, encoding="utf-8")
    else:
        path.write_text(text.rstrip("\n") + "\n\n" + block + "\n", encoding="utf-8")
