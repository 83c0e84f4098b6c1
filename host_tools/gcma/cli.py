"""The ``gcma`` command: argparse sub-commands, each a thin handler."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gcma import __version__, doctor, paths, runner, targets
from gcma.android import files as android_files
from gcma.android import flash, images, manifest
from gcma.build import bisect, dt, kconfig, kernel, modules, pipeline, remote, rootfs
from gcma.build.toolchain import Toolchain
from gcma.checks import (
    bench,
    bench_report,
    fuzz,
    integrity,
    kmi,
    kunit,
    matrix,
    pressure,
    scenario,
    soak,
    stress,
)
from gcma.errors import INTERNAL_ERROR_EXIT, CheckFailed, GcmaError, UserError
from gcma.report import table
from gcma.targets import deploy
from gcma.targets.emulated import Artefacts, EmulatedTarget
from gcma.targets.machine import VIRT
from gcma.targets.transport import Transport

#: The options every kernel the modules load on must have.
KCONFIG_REQUIRED = paths.PROJECT / "gki" / "configs" / "required.config"


class _Parser(argparse.ArgumentParser):
    """One-line usage errors, exit code 2 (the user-error code)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _toolchain(args: argparse.Namespace) -> Toolchain:
    kwargs: dict[str, object] = {"use_ccache": not args.no_ccache}
    if args.jobs:
        kwargs["jobs"] = args.jobs
    return Toolchain(**kwargs)  # type: ignore[arg-type]


def _remote_host(args: argparse.Namespace) -> remote.Host | None:
    return remote.Host.parse(args.on, args.ssh_key) if args.on else None


def cmd_kernel_build(args: argparse.Namespace) -> int:
    host = _remote_host(args)
    if host is not None:
        if args.source != kernel.DEFAULT_TARBALL:
            raise UserError("--source names a tarball here; with --on, HOST builds its own "
                            f"{kernel.DEFAULT_TARBALL}")
        local = kernel.kernel_paths(args.variant).root
        remote.kernel_build(host, args.variant, local)
        print(json.dumps({"kernel": str(kernel.kernel_paths(args.variant).image),
                          "built_on": host.login}, indent=2))
        return 0
    meta = kernel.build(args.source, variant=args.variant, tc=_toolchain(args))
    print(json.dumps({k: meta[k] for k in ("kernel", "durations_s")}, indent=2))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    print(f"doctor: all {doctor.check()} requirements met")
    return 0


def cmd_kernel_bisect_build(args: argparse.Namespace) -> int:
    steps = bisect.run(args.source, variant=args.variant, tc=_toolchain(args))
    rows = [{"patch": s.patch, "builds": "yes" if s.ok else "NO",
             "seconds": f"{s.seconds:.0f}", "error": s.error} for s in steps]
    print(table(rows, ["patch", "builds", "seconds", "error"]))
    report = paths.out_dir() / "report" / "bisect-build.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps([vars(s) for s in steps], indent=2) + "\n")
    if not all(s.ok for s in steps):
        raise CheckFailed(f"{steps[-1].patch} does not build on its own ({report})")
    return 0


def cmd_modules_build(args: argparse.Namespace) -> int:
    host = _remote_host(args)
    if host is not None:
        if args.uses:
            raise UserError("--uses is not supported with --on yet")
        try:
            rel = args.src.resolve().relative_to(paths.PROJECT)
        except ValueError:
            raise UserError(f"--src {args.src}: with --on, the sources must be in this "
                            f"checkout ({paths.PROJECT}), which is what HOST gets") from None
    dist = modules.dist_dir(args.src, args.variant)
    if host is not None:
        remote.modules_build(host, args.variant, str(rel),
                             str(args.kdir) if args.kdir else None, dist)
    else:
        modules.build(args.src, args.kdir, variant=args.variant, uses=tuple(args.uses or ()))
    if args.symbol_list:
        report = kmi.check(dist, args.symbol_list)
        if report.not_in_list:
            raise CheckFailed(f"imports outside {args.symbol_list}:\n  " + "\n  ".join(
                f"{sym} ({', '.join(mods)})" for sym, mods in sorted(report.not_in_list.items())))
    print(dist)
    return 0


def cmd_modules_symbols(args: argparse.Namespace) -> int:
    dist = args.modules or modules.dist_dir(variant=args.variant)
    symvers = args.symvers
    if symvers is None:
        kdir = args.kdir or kernel.kernel_paths(args.variant).build
        symvers = kdir / "Module.symvers"
        if not symvers.exists():
            raise UserError(f"{symvers} not found: build that kernel or name --symvers/--kdir")
    report = kmi.check(dist, args.check, symvers)
    per_module: dict[str, int] = {}
    for imp in report.imports:
        per_module[imp.module] = per_module.get(imp.module, 0) + 1
    for module, count in per_module.items():
        print(f"{module}: {count} kernel symbols")
    for title, missing in ((f"not in {args.check}", report.not_in_list),
                           (f"not exported by {symvers}", report.not_exported)):
        for sym, mods in sorted(missing.items()):
            print(f"  {sym}: {title} (used by {', '.join(sorted(set(mods)))})")
    if args.write_list:
        args.write_list.write_text(kmi.symbol_list(report, f"GCMA vendor modules ({dist})"))
        print(f"symbol list: {args.write_list}")
    if not report.ok:
        raise CheckFailed(f"{len(report.not_in_list)} symbols missing from the list, "
                          f"{len(report.not_exported)} not exported by the kernel")
    print(f"all {len({i.symbol for i in report.imports})} kernel symbols are "
          + (f"in {args.check} and " if args.check else "") + f"exported by {symvers}")
    return 0


def cmd_dtb_build(args: argparse.Namespace) -> int:
    print(dt.build(VIRT, args.overlay or None, args.name))
    return 0


def cmd_dtb_validate(args: argparse.Namespace) -> int:
    problems = dt.validate(args.overlay or None)
    if problems:
        raise UserError("device tree does not match the bindings in dts/bindings:\n  "
                        + "\n  ".join(problems))
    print("valid")
    return 0


def cmd_rootfs_build(args: argparse.Namespace) -> int:
    print(rootfs.build_initramfs(modules.dist_dir(variant=args.variant),
                                 modules.dist_dir(pipeline.TEST_MODULES, args.variant),
                                 args.variant))
    print(rootfs.build_data_disk())
    print(rootfs.build_erofs_disk())
    print(rootfs.build_data1k_disk())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    durations = pipeline.build_all(_toolchain(args), tuple(args.variant or ["default"]))
    print(" ".join(f"{k}={v:.1f}s" for k, v in durations.items()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if not args.no_build:
        pipeline.build_all(_toolchain(args))
    pipeline.run_default(args.name, timeout=args.timeout)
    return 0


def cmd_kunit_run(args: argparse.Namespace) -> int:
    report = kunit.run(args.name, timeout=args.timeout, filter_glob=args.filter,
                       variant=args.variant)
    for suite in report.suites:
        print(f"{suite.name}: {suite.count('pass')}/{len(suite.cases)} passed")
    return 0


def _on_target(args: argparse.Namespace, work: Callable[[Transport], dict[str, Any]],
               report_name: str, extra_cmdline: str = "",
               dtb: str = dt.DEFAULT_DTB, out: Path | None = None) -> tuple[dict[str, Any], Path]:
    """Boot a target, run ``work`` on it, stop it, and write the report to
    ``out`` (default: out/report/<report_name>-<variant>.json)."""
    out = out or paths.out_dir() / "report" / f"{report_name}-{args.variant}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    target = EmulatedTarget(args.name)
    try:
        with target.start(Artefacts.default(args.variant, dtb), timeout=args.timeout,
                          extra_cmdline=extra_cmdline) as shell:
            report = work(shell)
    except CheckFailed as exc:
        if exc.report is not None:
            out.write_text(json.dumps(exc.report, indent=2) + "\n")
            raise CheckFailed(f"{exc} (report: {out})") from exc
        raise
    finally:
        target.stop()
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report, out


def cmd_integrity(args: argparse.Namespace) -> int:
    report, _ = _on_target(args, lambda t: integrity.run(
        t, rounds=args.rounds, admit_all=args.admit_all,
        heap_load=tuple(args.heap_load)), "integrity")
    print(f"admission: {report['admission']}")
    rows = [{k: str(v) for k, v in phase.items()} for phase in report["phases"]]  # type: ignore[attr-defined]
    print(table(rows, ["name", "verified_reads", "mismatches", "stored", "restored",
                       "missed", "hit_rate", "invalidated", "reclaimed", "recalled"]))
    print(f"verified reads {report['verified_reads']}, mismatches {report['mismatches']}, "
          f"gcma_stress {report['gcma_stress']}")
    return 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    import time

    seed = args.seed if args.seed is not None else int(time.time())
    seconds = args.minutes * 60 if args.minutes else args.seconds
    runner.info(f"fuzz: seed {seed}, {seconds} s (replay the run with --seed {seed})")
    report, out = _on_target(args, lambda t: asdict(fuzz.run(
        t, args.heap or list(fuzz.DEFAULT_HEAPS), seed, seconds, args.procs, args.threads,
        args.max_kib)), "fuzz")
    ops = ", ".join(f"{k} {v}" for k, v in sorted(report["ops"].items()))
    print(f"seed {seed}: {report['steps']} steps in {report['seconds']} s, no failure; "
          f"{report['enomem']} allocations met a full heap")
    print(f"operations: {ops}")
    for area, state in sorted(report["areas"].items()):
        print(f"{area}: used {state['used_kib']} KiB, pending {state['pending_pages']}, "
              f"donated {state['donated'] * 4} of {state['total_kib']} KiB")
    print(f"report: {out}")
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    def progress(rnd: soak.Round) -> None:
        runner.info(f"soak round {rnd.number}: {rnd.work}, {rnd.seconds} s, "
                    f"{rnd.allocations} allocations ({rnd.failed_allocations} failed), "
                    f"MemAvailable {rnd.mem_available_kib} KiB, SUnreclaim "
                    f"{rnd.slab_unreclaimable_kib} KiB"
                    + (f", ERRORS: {'; '.join(rnd.errors)}" if rnd.errors else ""))

    report, out = _on_target(args, lambda t: asdict(soak.run(
        t, args.minutes, args.heap, args.round_seconds, args.seed, progress)), "soak")
    rounds = report["rounds"]
    print(f"soak: {report['minutes']} min, {len(rounds)} rounds, "
          f"{sum(r['allocations'] for r in rounds)} allocations "
          f"({sum(r['failed_allocations'] for r in rounds)} failed), no error, no kernel "
          f"report; drift over the soak: MemAvailable {report['drift_kib']['MemAvailable']} "
          f"KiB, SUnreclaim {report['drift_kib']['SUnreclaim']} KiB")
    print(f"report: {out}")
    return 0


def cmd_bench_cost(args: argparse.Namespace) -> int:
    report, out = _on_target(args, lambda t: bench.run(
        t, rounds=args.rounds, alloc_size=args.alloc_size, allocs=args.allocs),
        "bench-cost", bench.SKIP_CMDLINE, dt.NO_GUARANTEE_DTB)
    read, alloc = report["read"], report["alloc"]
    print(f"reads: no pool {read['no_pool_s']} s, pools {read['pools_s']} s, "
          f"ratio {read['ratio_pools_over_no_pool']}")
    print(f"{alloc['count']} {alloc['size']} {alloc['heap']} allocations, {alloc['tail']}: "
          f"idle {alloc['idle_tail_us']} us, streaming {alloc['streaming_tail_us']} us, "
          f"ratio {alloc['ratio_streaming_over_idle']}")
    print(f"report: {out}")
    return 0


def cmd_bench_stream(args: argparse.Namespace) -> int:
    report, out = _on_target(args, lambda t: bench.stream(
        t, size_mib=args.size_mib, passes=args.passes), "bench-stream", bench.SKIP_CMDLINE,
        dt.NO_GUARANTEE_DTB)
    print(f"{report['size_mib']} MiB stream: no pool {report['no_pool_s']} s, "
          f"pools (workingset) {report['workingset_s']} s, "
          f"pools (admit all) {report['admit_all_s']} s")
    print(f"ratios over no pool: workingset {report['ratio_workingset_over_no_pool']}, "
          f"admit all {report['ratio_admit_all_over_no_pool']}; stored: workingset "
          f"{report['workingset_counters']['stored']}, admit all "
          f"{report['admit_all_counters']['stored']}")
    print(f"report: {out}")
    return 0


def cmd_bench_free_stall(args: argparse.Namespace) -> int:
    report, out = _on_target(args, lambda t: bench.free_stall(t, allocs=args.count),
                             "bench-free-stall")
    print(f"{report['count']} {report['timed_size']} {report['heap']} allocations, "
          f"{report['tail']}: idle {report['idle_tail_us']} us, while "
          f"{report['freed_size']} buffers are allocated and freed "
          f"{report['freeing_tail_us']} us, "
          f"ratio {report['ratio_freeing_over_idle']}")
    print(f"report: {out}")
    return 0


def cmd_bench_heaps(args: argparse.Namespace) -> int:
    report, out = _on_target(args, lambda t: bench.heaps(
        t, size=args.size, allocs=args.count), "bench-heaps")
    rows = []
    tail = report["tail"]
    for heap, row in report["heaps"].items():
        idle, busy = row["idle"], row["streaming"]
        rows.append({"heap": heap, "ok idle": f"{idle['ok']}/{report['count']}",
                     "p50 idle us": str(idle.get("p50_us", "-")),
                     f"{tail} idle us": str(idle.get(f"{tail}_us", "-")),
                     "ok streaming": f"{busy['ok']}/{report['count']}",
                     "p50 streaming us": str(busy.get("p50_us", "-")),
                     f"{tail} streaming us": str(busy.get(f"{tail}_us", "-")),
                     f"ratio {tail}": str(row.get("ratio_streaming_over_idle_tail",
                                                  "n/a"))})
    print(f"{report['count']} allocations of {report['size']} per heap, idle and while a "
          f"{report['stream_mib']} MiB file streams through the page cache"
          + (f" (fewer than {bench.P99_MIN_COUNT}: the tail is the slowest, not a p99)"
             if tail == "max" else "") + ":")
    print(table(rows, ["heap", "ok idle", "p50 idle us", f"{tail} idle us", "ok streaming",
                       "p50 streaming us", f"{tail} streaming us", f"ratio {tail}"]))
    print(f"report: {out}")
    return 0


def bench_dir(variant: str) -> Path:
    """Where ``gcma bench`` writes report.md, report.json and the plots."""
    return paths.out_dir() / "report" / f"bench-{variant}"


#: What `gcma bench --full` runs: boots, and allocations per cell.
FULL_BOOTS = 3
FULL_COUNT = 100


def cmd_bench_matrix(args: argparse.Namespace) -> int:
    if args.full:
        args.boots, args.count = FULL_BOOTS, FULL_COUNT
    out_dir = bench_dir(args.variant)
    reproducer = shlex.join(["gcma", "bench", "--target", args.name, "--variant", args.variant,
                             "--size", args.size, "--count", str(args.count),
                             "--settle", f"{args.settle:g}", "--churn-rounds",
                             str(args.churn_rounds), "--boots", str(args.boots)]
                            + (["--no-churn"] if args.no_churn else []))

    def work(t: Transport) -> dict[str, Any]:
        m = matrix.run_matrix(t, size=args.size, count=args.count, settle_s=args.settle,
                              progress=runner.info)
        report: dict[str, Any] = {"target": args.name, "variant": args.variant,
                                  "reproducer": reproducer, "matrix": m,
                                  "ratios": matrix.ratios(m), "utility": None}
        if not args.no_churn:
            report["utility"] = matrix.churn(t, rounds=args.churn_rounds,
                                             progress=runner.info)
        return report

    if args.boots == 1:
        # A failed run still leaves its report.json; a good one gets the rest.
        report, _ = _on_target(args, work, "bench", out=out_dir / "report.json")
    else:
        # Each boot its own target and report; the ratios are their medians.
        boots = []
        for i in range(1, args.boots + 1):
            runner.info(f"bench: boot {i} of {args.boots}")
            one, _ = _on_target(argparse.Namespace(**{**vars(args),
                                                      "name": f"{args.name}-{i}"}),
                                work, "bench", out=out_dir / f"report-boot{i}.json")
            matrix.check(one["matrix"])
            boots.append(one)
        report = dict(boots[0])
        report["boot_ratios"] = [b["ratios"] for b in boots]
        report["ratios"], report["spread"] = matrix.across_boots(report["boot_ratios"])
    md = bench_report.write(report, out_dir)
    print(bench_report.ratio_table(report))
    print(f"report: {md}")
    if args.boots == 1 and args.count < bench.P99_MIN_COUNT:
        print("for p99s and their spread across boots: gcma bench --full "
              f"({FULL_BOOTS} boots of {FULL_COUNT} allocations per cell)")
    matrix.check(report["matrix"])
    return 0


def cmd_stress_list(args: argparse.Namespace) -> int:
    rows = []
    for name in scenario.available():
        sc = scenario.find(name)  # every file is checked
        rows.append({"scenario": sc.name, "description": sc.description})
    print(table(rows, ["scenario", "description"]))
    print()
    print(table([{"pressure": p.name, "generator": p.help}
                 for p in pressure.PRESSURES.values()], ["pressure", "generator"]))
    return 0


def cmd_stress_run(args: argparse.Namespace) -> int:
    sc = scenario.find(args.scenario)
    loads = pressure.parse(args.pressure)
    tag = "+".join(p.name for p in loads) or "idle"
    report, out = _on_target(args, lambda t: stress.run(
        t, sc, heap=args.heap, duration_s=args.seconds, pressures=loads),
        f"stress-{sc.name}-{args.heap}-{tag}")
    s = report["summary"]
    print(f"{sc.name} on {args.heap} ({tag}): {s['ok']}/{s['count']} allocations "
          f"({s['success_pct']}%), p50 {s.get('p50_us', '-')} us, "
          f"p99 {s.get('p99_us', '-')} us, max {s.get('max_us', '-')} us; "
          f"errnos {s['errnos'] or 'none'}; not zeroed {s['not_zeroed']}, "
          f"pattern mismatches {s['pattern_mismatches']}")
    print(f"report: {out}")
    return 0


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"not a number of seconds from 0 to 86400: {text!r}")
    return value


def cmd_target_start(args: argparse.Namespace) -> int:
    EmulatedTarget(args.name).start(Artefacts.default(args.variant), timeout=args.timeout,
                                    extra_cmdline=args.append, detach=True).close()
    return 0


def cmd_target_stop(args: argparse.Namespace) -> int:
    if not EmulatedTarget(args.name).stop():
        runner.info(f"target {args.name} was not running")
    return 0


def cmd_target_status(args: argparse.Namespace) -> int:
    state = EmulatedTarget(args.name).state()
    if state is None:
        print(f"{args.name}: stopped")
        return 1
    print(f"{args.name}: running pid={state['pid']} ssh=127.0.0.1:{state['ssh_port']} "
          f"adb=127.0.0.1:{state.get('adb_port')}")
    return 0


def cmd_kconfig_check(args: argparse.Namespace) -> int:
    import gzip
    import tempfile

    from gcma.checks import kconfig_tree

    tree = args.kernel_dir or kernel.find_tree(kernel.kernel_paths())
    if tree is None:
        raise UserError("no kernel tree: name one with --kernel-dir (or build ours)")
    arch = args.arch
    with tempfile.TemporaryDirectory() as tmp:
        if args.name:
            spec = targets.resolve(args.name)
            arch = arch or spec.arch
            config = Path(tmp) / "config"
            with targets.connect(spec) as t:
                if not t.run("test -r /proc/config.gz", timeout=30).ok:
                    raise UserError(f"target {spec.name} has no /proc/config.gz "
                                    f"(CONFIG_IKCONFIG_PROC); give its .config with --config")
                t.pull("/proc/config.gz", Path(tmp) / "config.gz")
            config.write_bytes(gzip.decompress((Path(tmp) / "config.gz").read_bytes()))
            label = f"target {spec.name} (/proc/config.gz)"
        else:
            config = args.config or kernel.kernel_paths().build / ".config"
            if not config.is_file():
                raise UserError(f"{config}: no such .config")
            label = str(config)
        kconf = kconfig_tree.load_tree(tree, arch or "arm64", args.cc, config)
        values = kconfig.read_dotconfig(config)
    wanted = kconfig.parse_fragments(args.fragment or [KCONFIG_REQUIRED])
    findings = kconfig_tree.check(kconf, values, wanted)
    for f in findings:
        state = "ok" if f.ok else f"WANTED {f.wanted} ({f.source})"
        print(f"{f.symbol}={f.got if f.got != kconfig.NOT_SET else 'n'}  {state}")
        for line in f.why:
            print(f"    {line}")
    off = [f for f in findings if not f.ok]
    if off:
        raise CheckFailed(f"{len(off)} of {len(findings)} options the modules need are not "
                          f"as wanted in {label}")
    print(f"all {len(findings)} options are as the modules need in {label}")
    return 0


def cmd_android_files(args: argparse.Namespace) -> int:
    m = manifest.load(args.manifest)
    problems = manifest.kbuild_problems(m, m.path.parent / "Kbuild")
    if problems:
        raise UserError("Kbuild and the manifest disagree:\n  " + "\n  ".join(problems))
    if args.check:
        stale = android_files.drift(m)
        if stale:
            raise UserError(f"{len(stale)} Android build file(s) do not match {m.path}: "
                            + ", ".join(str(p.relative_to(paths.PROJECT)) for p in stale)
                            + " (gcma android files rewrites them)")
        print(f"Android build files match {m.path}")
        return 0
    changed = android_files.write(m)
    for path in changed:
        runner.info(f"wrote {path}")
    if not changed:
        runner.info("Android build files already match the manifest")
    return 0


def _dist(args: argparse.Namespace) -> Path:
    return args.modules or modules.dist_dir(variant=args.variant)


def cmd_image(args: argparse.Namespace) -> int:
    m = manifest.load(args.manifest)
    if args.kind == "vendor-ramdisk":
        path = images.vendor_ramdisk(m, _dist(args), args.out)
    else:
        path = images.vendor_dlkm(m, _dist(args), args.out)
    print(path)
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    spec = targets.resolve(args.name)
    m = manifest.load(args.manifest)
    if flash.is_cuttlefish(spec):
        if args.kernel is None:
            raise UserError("a Cuttlefish needs --kernel (the GKI build's bzImage)")
        if args.initramfs is None or args.modules is None:
            raise UserError("a Cuttlefish needs --initramfs (your GKI build's initramfs.img: "
                            "its modules stay) and --modules (ours, built against its kernel)")
        initramfs = images.merged_ramdisk(m, args.modules, args.initramfs,
                                          images.images_dir() / f"cuttlefish-{spec.name}.cpio")
        plan = flash.cuttlefish_plan(spec, args.kernel, initramfs, args.area_size,
                                     args.restart)
    elif spec.transport == "adb":
        if args.vendor_dlkm is None and args.modules is None:
            raise UserError(f"target {spec.name}: give --vendor-dlkm (the image your Android "
                            "build made) or --modules (modules built against its kernel)")
        image = args.vendor_dlkm or images.vendor_dlkm(m, args.modules)
        plan = flash.device_plan(spec, image, ours=args.vendor_dlkm is None,
                                 replace_partition=args.replace_partition or args.dry_run)
    else:
        raise UserError(f"target {spec.name} ({spec.transport}): gcma flash is for a "
                        "Cuttlefish or an adb device; use gcma deploy")
    for note in plan.notes:
        runner.info(f"note: {note}")
    if args.dry_run:
        sys.stdout.write(plan.script())
        return 0
    flash.run(plan)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    spec = targets.resolve(args.name)
    dist = args.modules
    if dist is None:
        if spec.kernel.variant is None:
            raise UserError(f"target {spec.name} pairs with a kernel of its own "
                            f"({spec.source}): build the modules against it (gcma modules "
                            f"build --kdir DIR) and name their dist folder with --modules")
        dist = modules.dist_dir(variant=spec.kernel.variant)
    try:
        with targets.connect(spec) as t:
            result = deploy.deploy(t, spec, dist)
    except deploy.NeedsReboot:
        if not args.reboot:
            raise
        deploy.reboot(spec, dist)
        with targets.connect(spec) as t:
            result = deploy.deploy(t, spec, dist)
        result.rebooted = True
    if args.smoke:
        with targets.connect(spec) as t:
            result.smoke = deploy.smoke(t, spec, result.heaps,
                                        rootfs.programs_dir() / deploy.SMOKE_PROGRAM)
    report = paths.out_dir() / "report" / f"deploy-{spec.name}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(asdict(result), indent=2) + "\n")
    if result.action == "unchanged":
        print(f"{spec.name}: modules unchanged; heaps {', '.join(result.heaps) or 'none'}")
    else:
        print(f"{spec.name}: loaded {', '.join(result.loaded)} in {result.seconds:.1f}s "
              f"(pushed {len(result.pushed)}, unloaded {len(result.unloaded)}); heaps "
              f"{', '.join(result.heaps) or 'none'}")
    for line in result.kernel_log:
        print(f"  {line}")
    for line in result.smoke:
        print(f"smoke: {line}")
    print(f"report: {report}")
    return 0


def _open(name: str) -> Transport:
    """A transport to the target ``name`` (targets.yaml, or a running emulated one)."""
    return targets.connect(targets.resolve(name))


def cmd_target_shell(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UserError("no command given (gcma target shell -- CMD...)")
    with _open(args.name) as t:
        res = t.run(" ".join(command), timeout=args.timeout)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    return res.exit_status


def cmd_target_push(args: argparse.Namespace) -> int:
    if not args.local.is_file():
        raise UserError(f"no such file: {args.local}")
    with _open(args.name) as t:
        t.push(args.local, args.remote)
    return 0


def cmd_target_pull(args: argparse.Namespace) -> int:
    with _open(args.name) as t:
        t.pull(args.remote, args.local)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _size_arg(text: str) -> str:
    """A buffer size as heap_alloc takes it: digits, then K or M."""
    if len(text) < 2 or text[-1] not in "KM" or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise argparse.ArgumentTypeError(f"not a size like 4K or 32M: {text!r}")
    return text


#: Options of `gcma bench` that its actions take too.
BENCH_SHARED = ("name", "variant", "timeout", "size", "count")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gcma", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gcma {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def build_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("-j", "--jobs", type=_positive_int, help="parallel jobs (default: cores)")
        p.add_argument("--no-ccache", action="store_true", help="compile without ccache")

    def remote_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--on", metavar="[USER@]HOST[:PORT]",
                       help="build on this machine over ssh and fetch the results back")
        p.add_argument("--ssh-key", type=Path, help="private key for --on (default: ssh's)")

    def variant_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--variant", default=kernel.DEFAULT_VARIANT, choices=kernel.variants(),
                       help="kernel variant (default: default)")

    def boot_timeout_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timeout", type=_positive_int, default=180, help="boot timeout, s")

    def manifest_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--manifest", type=Path, default=manifest.default_path(),
                       help="module manifest (default: vendor_modules/modules.yaml)")

    def target_opt(p: argparse.ArgumentParser, default: str = "default") -> None:
        p.add_argument("--target", "--name", dest="name", default=default,
                       help=f"target name (default: {default})")

    p = sub.add_parser("doctor", help="check that every tool, file and package a step "
                       "needs is here, and say how to install what is not")
    p.set_defaults(func=cmd_doctor)

    k = sub.add_parser("kernel", help="the GKI-equivalent kernel").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = k.add_parser("build", help="unpack, patch, configure and build the kernel")
    variant_opt(p)
    p.add_argument("--source", type=Path, default=kernel.DEFAULT_TARBALL,
                   help=f"kernel source tarball (default: {kernel.DEFAULT_TARBALL})")
    build_opts(p)
    remote_opts(p)
    p.set_defaults(func=cmd_kernel_build)
    p = k.add_parser("bisect-build",
                     help="build the kernel after each patch of the series (slow)")
    variant_opt(p)
    p.add_argument("--source", type=Path, default=kernel.DEFAULT_TARBALL,
                   help=f"kernel source tarball (default: {kernel.DEFAULT_TARBALL})")
    build_opts(p)
    p.set_defaults(func=cmd_kernel_bisect_build)

    m = sub.add_parser("modules", help="out-of-tree vendor modules").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = m.add_parser("build", help="build modules against a kernel tree")
    p.add_argument("--src", type=Path, default=paths.PROJECT / "vendor_modules",
                   help="module source folder with a Kbuild file (default: vendor_modules)")
    p.add_argument("--kdir", type=Path, default=None,
                   help="built kernel tree to build against (default: ours)")
    variant_opt(p)
    p.add_argument("--uses", type=Path, action="append",
                   help="module folder built before whose exports these modules import")
    p.add_argument("--symbol-list", type=Path,
                   help="KMI symbol list (abi_gki format) every kernel import must be in")
    remote_opts(p)
    p.set_defaults(func=cmd_modules_build)
    p = m.add_parser("symbols", help="check the modules' kernel imports against a KMI "
                     "symbol list and a kernel's exports")
    p.add_argument("--modules", type=Path, help="module dist folder (default: ours)")
    variant_opt(p)
    p.add_argument("--check", type=Path, metavar="LIST",
                   help="KMI symbol list in Android's format ([abi_symbol_list])")
    p.add_argument("--symvers", type=Path, help="the target kernel's Module.symvers")
    p.add_argument("--kdir", type=Path, help="the target kernel's build folder (for its "
                   "Module.symvers; default: ours)")
    p.add_argument("--write-list", type=Path, metavar="OUT",
                   help="write the symbol list these modules need")
    p.set_defaults(func=cmd_modules_symbols)

    d = sub.add_parser("dtb", help="device tree of the emulated target").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = d.add_parser("build", help="QEMU's DTB plus our overlays")
    p.add_argument("--overlay", type=Path, action="append",
                   help="overlay source (.dtso), repeatable (default: dts/virt-gcma.dtso "
                        "and dts/virt-cma-guarantee.dtso)")
    p.add_argument("--name", default="virt-gcma", help="output name (default: virt-gcma)")
    p.set_defaults(func=cmd_dtb_build)
    p = d.add_parser("validate", help="check our overlays against dts/bindings (dtschema)")
    p.add_argument("--overlay", type=Path, action="append",
                   help="overlay source (.dtso), repeatable (default: dts/virt-gcma.dtso "
                        "and dts/virt-cma-guarantee.dtso)")
    p.set_defaults(func=cmd_dtb_validate)

    r = sub.add_parser("rootfs", help="initramfs and data disk").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = r.add_parser("build", help="build the initramfs and the data disks")
    variant_opt(p)
    p.set_defaults(func=cmd_rootfs_build)

    p = sub.add_parser("build", help="kernel, modules, DTB and root filesystem")
    build_opts(p)
    p.add_argument("--variant", action="append", choices=kernel.variants(),
                   help="kernel variant, repeatable (default: default)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="build, boot, run the default on-target program, report")
    build_opts(p)
    target_opt(p, "main")
    p.add_argument("--no-build", action="store_true", help="use what is built")
    boot_timeout_opt(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("integrity", help="page-cache integrity run under cleancache")
    target_opt(p, "integrity")
    variant_opt(p)
    p.add_argument("--rounds", type=_positive_int, default=3, help="read rounds (default 3)")
    p.add_argument("--admit-all", action="store_true",
                   help="store every clean folio while reading, not only those with a "
                   "record of reuse (the kernel's default)")
    p.add_argument("--heap-load", action="append", default=[], metavar="HEAP",
                   help="allocate from HEAP in a loop all along the run (repeatable; "
                   "not camera, which gcma_stress holds: e.g. video)")
    boot_timeout_opt(p)
    p.set_defaults(func=cmd_integrity)

    p = sub.add_parser("fuzz", help="random seeded heap operations in processes and threads "
                       "(heap_fuzz); then the areas must be empty and the kernel log clean")
    target_opt(p, "fuzz")
    variant_opt(p)
    p.add_argument("--seed", type=int, default=None, help="default: the time; printed")
    p.add_argument("--seconds", type=_positive_int, default=60, help="default 60")
    p.add_argument("--minutes", type=_positive_int, default=None, help="instead of --seconds")
    p.add_argument("--procs", type=_positive_int, default=2, help="processes (default 2)")
    p.add_argument("--threads", type=_positive_int, default=2,
                   help="threads per process (default 2)")
    p.add_argument("--max-kib", type=_positive_int, default=16384,
                   help="largest buffer, KiB (default 16384)")
    p.add_argument("--heap", action="append", help="heap to fuzz, repeatable "
                   "(default: camera and video)")
    boot_timeout_opt(p)
    p.set_defaults(func=cmd_fuzz)

    p = sub.add_parser("soak", help="mixed scenarios and fuzz bursts under every pressure for "
                       "a long time; errors, drift and kernel reports fail it")
    target_opt(p, "soak")
    variant_opt(p)
    p.add_argument("--minutes", type=_positive_int, default=30, help="default 30")
    p.add_argument("--round-seconds", type=_positive_int, default=60,
                   help="length of each round (default 60)")
    p.add_argument("--seed", type=int, default=1, help="of the fuzz rounds (default 1)")
    p.add_argument("--heap", action="append", help="heap, repeatable (default: camera, video)")
    boot_timeout_opt(p)
    p.set_defaults(func=cmd_soak)

    bp = sub.add_parser("bench", help="the heaps side by side under each pressure, in one "
                        "boot (no action); or one of the benchmarks below")
    variant_opt(bp)
    target_opt(bp, "bench")
    bp.add_argument("--timeout", type=_positive_int, default=300, help="boot timeout, s")
    bp.add_argument("--size", default="16M", type=_size_arg,
                    help="buffer size, K or M suffix (default 16M)")
    bp.add_argument("--count", type=_positive_int, default=20,
                    help="allocations per heap and condition (default 20)")
    bp.add_argument("--settle", type=_seconds_arg, default=10.0,
                    help="seconds the pressure runs before a condition's cells (default 10)")
    bp.add_argument("--churn-rounds", type=_positive_int, default=3,
                    help="timed read rounds of the churn, per setting (default 3)")
    bp.add_argument("--no-churn", action="store_true",
                    help="skip the cleancache utility (churn) measurement")
    bp.add_argument("--boots", type=_positive_int, default=1,
                    help="run the matrix in this many boots; ratios are their medians, "
                         "with the range (default 1)")
    bp.add_argument("--full", action="store_true",
                    help="the full run: 3 boots of 100 allocations per cell (sets "
                         "--boots and --count)")
    bp.set_defaults(func=cmd_bench_matrix)
    _late_defaults(bp, *BENCH_SHARED)
    be = bp.add_subparsers(dest="action", required=False, parser_class=_Parser)

    def bench_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        p = be.add_parser(name, help=help_text)
        variant_opt(p)
        target_opt(p, "bench")
        p.add_argument("--timeout", type=_positive_int, default=300, help="boot timeout, s")
        return p

    p = bench_parser("cost", "cleancache's cost: reads with and without pools, "
                     "and GCMA allocation under page-cache streaming")
    p.add_argument("--rounds", type=_positive_int, default=5,
                   help="timed read rounds per pass (default 5)")
    p.add_argument("--alloc-size", default="128M", type=_size_arg,
                   help="camera allocation size, K or M suffix (default 128M)")
    p.add_argument("--allocs", type=_positive_int, default=20,
                   help="timed allocations, idle and streaming (default 20)")
    p.set_defaults(func=cmd_bench_cost)
    _late_defaults(p, *BENCH_SHARED)
    p = bench_parser("stream", "a file larger than RAM read once: no pool, pools "
                     "with the default admission, pools admitting everything")
    p.add_argument("--size-mib", type=_positive_int, default=1200,
                   help="file size (default 1200)")
    p.add_argument("--passes", type=_positive_int, default=3,
                   help="timed passes per setting (default 3)")
    p.set_defaults(func=cmd_bench_stream)
    _late_defaults(p, *BENCH_SHARED)
    p = bench_parser("free-stall", "small allocations while big buffers of the same "
                     "area are allocated and freed, against an idle area")
    p.add_argument("--count", type=_positive_int, default=300,
                   help="timed allocations per pass (default 300)")
    p.set_defaults(func=cmd_bench_free_stall)
    _late_defaults(p, *BENCH_SHARED)
    p = bench_parser("heaps", "plain CMA, CMA with guarantee and our heap side by side, "
                     "idle and under page-cache streaming")
    p.add_argument("--size", default="32M", type=_size_arg,
                   help="buffer size, K or M suffix (default 32M)")
    p.add_argument("--count", type=_positive_int, default=20,
                   help="allocations per heap and run (default 20)")
    p.set_defaults(func=cmd_bench_heaps)
    _late_defaults(p, *BENCH_SHARED)

    st = sub.add_parser("stress", help="camera-like allocation scenarios on a heap"
                        ).add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = st.add_parser("list", help="the scenarios in device_tests/scenarios/, checked")
    p.set_defaults(func=cmd_stress_list)
    p = st.add_parser("run", help="run a scenario on a heap of the emulated target")
    p.add_argument("scenario", help="a scenario name (gcma stress list) or a YAML file")
    p.add_argument("--heap", required=True, help="a heap of /dev/dma_heap, e.g. camera")
    p.add_argument("--seconds", type=_seconds_arg, default=None,
                   help="run this long instead of the scenario's own length")
    p.add_argument("--pressure", action="append", default=[], metavar="P[,P...]",
                   help="pressure generators during the run: "
                   f"{', '.join(pressure.PRESSURES)} or all (default: none)")
    variant_opt(p)
    target_opt(p, "stress")
    p.add_argument("--timeout", type=_positive_int, default=300, help="boot timeout, s")
    p.set_defaults(func=cmd_stress_run)

    ku = sub.add_parser("kunit", help="the kernel's KUnit suites").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = ku.add_parser("run", help="boot with kunit.enable=1 and check the KTAP results")
    target_opt(p, "kunit")
    variant_opt(p)
    p.add_argument("--filter", default="", help="kunit.filter_glob, e.g. 'gcma*'")
    p.add_argument("--timeout", type=_positive_int, default=600, help="seconds (default 600)")
    p.set_defaults(func=cmd_kunit_run)

    kc = sub.add_parser("kconfig", help="the kernel configuration the modules need").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = kc.add_parser("check", help="evaluate the options the modules need on a kernel's "
                      "Kconfig tree and say why each one that is off is off")
    p.add_argument("--kernel-dir", type=Path, help="kernel source tree (default: ours)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help=".config to check (default: our build's)")
    where.add_argument("--target", dest="name", help="read the running kernel's "
                       "/proc/config.gz from this target")
    p.add_argument("--fragment", type=Path, action="append",
                   help=f"what is wanted (default: {KCONFIG_REQUIRED.relative_to(paths.PROJECT)})")
    p.add_argument("--arch", choices=("arm64", "x86_64"), help="default: the target's, or arm64")
    p.add_argument("--cc", help="the compiler Kconfig probes (default: the arch's gcc)")
    p.set_defaults(func=cmd_kconfig_check)

    p = sub.add_parser("deploy", help="push the modules to a target, load them in order, "
                       "and check that they run and their heaps appear")
    target_opt(p)
    p.add_argument("--modules", type=Path, default=None,
                   help="a module dist folder (default: ours, built for the target's kernel)")
    p.add_argument("--reboot", action="store_true",
                   help="reboot the target when a loaded module cannot be unloaded "
                        "(gcma_heap), then load the new ones")
    p.add_argument("--smoke", action="store_true",
                   help="then allocate, check and free a few buffers on each heap")
    p.set_defaults(func=cmd_deploy)

    a = sub.add_parser("android", help="Android build files from the module manifest"
                       ).add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = a.add_parser("files", help="write BUILD.bazel, Android.bp, the product makefile, "
                     "ueventd and SELinux files from vendor_modules/modules.yaml")
    manifest_opt(p)
    p.add_argument("--check", action="store_true",
                   help="write nothing; fail if a file does not match the manifest")
    p.set_defaults(func=cmd_android_files)

    p = sub.add_parser("image", help="module images: the vendor_boot ramdisk fragment "
                       "(cpio) or vendor_dlkm (erofs)")
    p.add_argument("kind", choices=("vendor-ramdisk", "vendor-dlkm"))
    manifest_opt(p)
    p.add_argument("--modules", type=Path, help="module dist folder (default: ours)")
    variant_opt(p)
    p.add_argument("--out", type=Path, help="image path (default: out/images/)")
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("flash", help="the kernel and modules onto a Cuttlefish (launch_cvd) "
                       "or vendor_dlkm onto a device (fastboot)")
    target_opt(p, "cuttlefish")
    manifest_opt(p)
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--modules", type=Path,
                   help="module dist folder, built against the target's kernel")
    p.add_argument("--kernel", type=Path, help="Cuttlefish: the kernel image")
    p.add_argument("--initramfs", type=Path,
                   help="Cuttlefish: the GKI build's initramfs; ours are added to its modules")
    p.add_argument("--area-size", default="128M",
                   help="Cuttlefish: size of each reserve_mem area (default 128M)")
    p.add_argument("--restart", action="store_true",
                   help="Cuttlefish: stop the running instance first")
    p.add_argument("--vendor-dlkm", type=Path,
                   help="device: the vendor_dlkm image to flash (default: ours)")
    p.add_argument("--replace-partition", action="store_true",
                   help="device: flash our image, which holds only the GCMA modules")
    p.set_defaults(func=cmd_flash)

    t = sub.add_parser("target", help="the emulated target").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = t.add_parser("start", help="boot in the background and wait until ready")
    target_opt(p)
    variant_opt(p)
    p.add_argument("--timeout", type=_positive_int, default=180, help="seconds (default 180)")
    p.add_argument("--append", default="", help="extra kernel command line")
    p.set_defaults(func=cmd_target_start)
    p = t.add_parser("stop", help="power off")
    target_opt(p)
    p.set_defaults(func=cmd_target_stop)
    p = t.add_parser("status", help="running or not (exit 1 when stopped)")
    target_opt(p)
    p.set_defaults(func=cmd_target_status)
    p = t.add_parser("shell", help="run a command; exits with its status")
    target_opt(p)
    p.add_argument("--timeout", type=_positive_int, default=None, help="seconds")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD...")
    p.set_defaults(func=cmd_target_shell)
    p = t.add_parser("push", help="copy a file to the target")
    target_opt(p)
    p.add_argument("local", type=Path)
    p.add_argument("remote")
    p.set_defaults(func=cmd_target_push)
    p = t.add_parser("pull", help="copy a file from the target")
    target_opt(p)
    p.add_argument("remote")
    p.add_argument("local", type=Path)
    p.set_defaults(func=cmd_target_pull)
    return parser


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a cancelled CI job) unwinds like Ctrl-C: targets are stopped
    and reports written on the way out."""
    raise SystemExit(128 + signum)


def _thread_excepthook(hook: threading.ExceptHookArgs) -> None:
    """A library's thread that dies (paramiko's, on a dead link) must not
    print a traceback over our one-line error: it goes to the log."""
    try:
        log = paths.logs_dir() / "thread-errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write("".join(traceback.format_exception(hook.exc_type, hook.exc_value,
                                                       hook.exc_traceback)))
    except OSError:
        pass


#: Where a parser keeps the defaults that _late_defaults() took from it.
_LATE = "_late_defaults"


def _late_defaults(parser: argparse.ArgumentParser, *dests: str) -> None:
    """Options that a command and its actions both take (``gcma bench
    --size 8M heaps``): argparse would reset a value given before the
    action to the action's default. Their defaults are applied after
    parsing instead, by parse_args(), from the parser that ran last."""
    late = {}
    for action in parser._actions:
        if action.dest in dests:
            late[action.dest] = action.default
            action.default = argparse.SUPPRESS
    parser.set_defaults(**{_LATE: late})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for dest, default in vars(args).pop(_LATE, {}).items():
        if not hasattr(args, dest):
            setattr(args, dest, default)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runner.set_quiet(args.quiet)
    signal.signal(signal.SIGTERM, _terminated)
    threading.excepthook = _thread_excepthook
    try:
        return int(args.func(args))
    except GcmaError as exc:
        text = str(exc)
        first, _, rest = text.partition("\n")
        print(f"gcma: error: {first}", file=sys.stderr)
        if rest:
            print(rest, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gcma: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the last resort: a bug of ours
        return _internal_error()


def _internal_error() -> int:
    """One line for the user, the traceback in a log they can attach."""
    trace = traceback.format_exc()
    try:
        log = paths.logs_dir() / "internal-error.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(trace)
        where = f"; the traceback is in {log}"
    except OSError:
        where = ""
        print(trace, file=sys.stderr)
    last = trace.strip().splitlines()[-1]
    print(f"gcma: internal error: {last}{where}; please report it", file=sys.stderr)
    return INTERNAL_ERROR_EXIT
