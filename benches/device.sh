#!/usr/bin/env bash
# One call on a lent GPU machine: correctness there, then every timing the issues ask for.
#   benches/device.sh stage   (here) build release binaries, pack them and the few data files into .dev/
#       (SETS: benchmark sets to carry, default "Set5 Set14"; GOLDEN=0 leaves out the golden
#       tensors and the golden check, and carries the checkpoint as safetensors; the carry
#       limit is 64 MiB; BINS: the binaries to carry, default all; QFILES: quantized files
#       made earlier, for the `carried` section, e.g. SETS="Urban100" to add a set's rows,
#       with CHECKPOINT: the exact checkpoint file they name by SHA-256)
#   benches/device.sh run [SECTION...]   (there, with .dev and .gl carried): setup, then the sections
#       check phase1 bench eval_sets phase2 quality (default: all), and carried (every
#       QFILES file on every staged set: `run setup carried`); results and log in $OUT
# Settings of `run` (environment): SWINQ_CALL_SECONDS (when the call must end, default 500 s
# after its start: `quality` fills the time left), BENCH_Q (quantized file to time, else one
# made here), BENCH_SIZES (default 64,128,256,512), SKIP_SORT=1, PHASE2_ITERS (DQC iterations
# of the phase 2 timing runs, default 20), DQC_METHODS (default "2dquant 2dquant+"), DQC_ITERS
# and DQC_BATCH (default: sized to the time left, batch 16), ABLATION (phase 1 methods) and
# ABLATION_JOBS (their parallel runs, default 2).
# The device machine has no Rust toolchain and no ../shared, hence the staging.
set -u
mode=${1:-}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

stage() {
    set -e
    local shared=${SWINQ_SHARED:-../shared}
    cargo build --release --locked
    local exes
    exes=$( { cargo test --release --locked --no-run --test kernels --test golden_gpu --test engines --message-format=json;
              cargo bench --locked --no-run --bench forward --bench sort --bench backward --message-format=json; } |
            jq -r 'select(.executable != null) | "\(.target.name) \(.executable)"')
    rm -rf .dev && mkdir -p .dev/bin .dev/shared/weights .dev/shared/golden .dev/shared/datasets
    cp target/release/swinq .dev/bin/
    while read -r name exe; do cp "$exe" ".dev/bin/$name"; done <<<"$exes"
    strip .dev/bin/*
    (cd .dev && tar -cJf bin.tar.xz ${BINS:-bin} && rm -rf bin)
    # The golden test reads the official .pth; otherwise its safetensors copy is a fifth the size.
    if [ -n "${CHECKPOINT:-}" ]; then
        cp "$CHECKPOINT" ".dev/shared/weights/swinir_light_x2_standin.${CHECKPOINT##*.}"
    elif [ "${GOLDEN:-1}" = 0 ]; then
        target/release/swinq convert "$shared/weights/swinir_light_x2_standin.pth" .dev/shared/weights/swinir_light_x2_standin.safetensors
    else
        cp "$shared/weights/swinir_light_x2_standin.pth" .dev/shared/weights/
    fi
    [ "${GOLDEN:-1}" = 0 ] || cp "$shared/golden/standin_x2_bird.safetensors" "$shared/golden/dobi_w4_bounds.json" .dev/shared/golden/
    for set in ${SETS:-Set5 Set14}; do
        mkdir -p ".dev/shared/datasets/$set/LR_bicubic"
        cp -r "$shared/datasets/$set/HR" ".dev/shared/datasets/$set/"
        cp -r "$shared/datasets/$set/LR_bicubic/X2" ".dev/shared/datasets/$set/LR_bicubic/"
    done
    if [ -n "${QFILES:-}" ]; then mkdir -p .dev/q && cp $QFILES .dev/q/; fi
    mkdir -p .dev/shared/datasets/calib/LR_bicubic
    cp -r "$shared/datasets/calib/LR_bicubic/X2" .dev/shared/datasets/calib/LR_bicubic/
    du -sh .dev
}

# Sections of `run`, in order; `benches/device.sh run check bench` runs a subset.
setup() {
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export SWINQ_SHARED=$here/.dev/shared
    export bin=/tmp/swinq-bin q=/tmp/swinq-q S=$here/.dev/shared
    export W=$(ls $S/weights/swinir_light_x2_standin.* | head -1) calib=$S/datasets/calib/LR_bicubic/X2
    mkdir -p $bin $q
    # The benchmark sets that were staged (the 64 MiB carry limit decides which).
    export SETS=$(cd $S/datasets && ls -d */ | tr -d / | grep -v calib | sort -f | tr '\n' ' ')
    # Only python3 is sure to be there (no jq, maybe no xz).
    python3 -c 'import tarfile; tarfile.open(".dev/bin.tar.xz").extractall("/tmp")' && mv /tmp/bin/* $bin/
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
    $bin/swinq info | tee /tmp/info.txt
    grep -qi nvidia /tmp/info.txt || { echo "no NVIDIA adapter"; exit 1; }
}

# One eval as one JSON line without the per-image list, merged with the JSON object in $EXTRA.
ev() {
    $bin/swinq eval --weights $W --dataset "$S/datasets/$1" --json "${@:2}" |
        python3 -c 'import json,os,sys; d=json.load(sys.stdin); d.pop("images"); d.update(json.loads(os.environ.get("EXTRA") or "{}")); print(json.dumps(d))'
}

check() {
    echo "== correctness on this GPU"
    if [ -f $S/golden/standin_x2_bird.safetensors ]; then
        timeout 150 $bin/golden_gpu --test-threads 1 standin_x2_bird 2>&1 | grep -E "test |result|error"
    else
        echo "golden tensors not staged: the FP32 evaluation below is the end-to-end check"
    fi
    timeout 150 $bin/kernels --test-threads 1 2>&1 | grep -E "test |result|panicked|error"
    timeout 150 $bin/engines --test-threads 1 2>&1 | grep -E "test |result|panicked|error"
    echo "attention with 4 invocations per query:"
    SWINQ_ATTN_LANES=4 timeout 150 $bin/kernels --test-threads 1 attention 2>&1 | grep -E "test |result|panicked|error"
}

phase1() {
    echo "== phase 1 alone (32 centre patches), then the anchor (8 patches)"
    for m in ${PHASE1_METHODS-dobi sorted-tail+bias}; do
        local t0=$SECONDS
        $bin/swinq calibrate --weights $W --calib $calib --bits 4 --method $m --patches 32 -o $q/w4_$m.safetensors 2>&1 | tail -2
        echo "phase1 $m W4 32 patches: $((SECONDS - t0)) s (process wall, incl. device init and shader compile)"
    done
    [ -f $q/anchor_dobi8.safetensors ] ||
        $bin/swinq calibrate --weights $W --calib $calib --bits 4 --method dobi --patches 8 -o $q/anchor_dobi8.safetensors 2>&1 | tail -1
}

bench() {
    echo "== speed: forward engines, sort"
    # Speed does not depend on the bounds: any W4 file will do, made here if no section made one.
    local bq=${BENCH_Q:-$q/bench_w4.safetensors}
    [ -f "$bq" ] || $bin/swinq calibrate --weights $W --calib $calib --bits 4 --method dobi --patches 8 -o "$bq" 2>&1 | tail -1
    $bin/swinq bench --weights $W --quantized "$bq" --size ${BENCH_SIZES:-64,128,256,512} --repeats 10 --warmup 3 --json > "$OUT/bench.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["device"], "launch cost %.1f us" % d["launch_cost_us"]); [print("%s² %s: median %.2f ms, min %.2f ms; %d launches; stages %s" % (t["height"], t["engine"], t["median_ms"], t["min_ms"], sum(t["dispatches"].values()), ", ".join("%s %.2f ms%s" % (k, v, " (%.2f TMAC/s)" % (t["stage_macs"][k] / v / 1e9) if k in t["stage_macs"] and v > 0 else "") for k, v in t["stages_ms"].items()))) for t in d["timings"]]' "$OUT/bench.json"
    SWINQ_BENCH_SIZES=256 SWINQ_BENCH_REPEATS=10 $bin/forward --bench
    echo "the same with wgpu's shader runtime checks (loop counters, index clamps, division guards):"
    SWINQ_SHADER_CHECKS=1 SWINQ_BENCH_SIZES=256 SWINQ_BENCH_REPEATS=10 $bin/forward --bench
    for ql in 2 4; do
        echo "the same with $ql invocations per query in the attention (SWINQ_ATTN_LANES=$ql):"
        SWINQ_ATTN_LANES=$ql SWINQ_BENCH_SIZES=256 SWINQ_BENCH_REPEATS=10 $bin/forward --bench
        SWINQ_ATTN_LANES=$ql $bin/swinq bench --weights $W --quantized "$bq" --size 256 --repeats 10 --warmup 3
    done
    [ ! -x $bin/backward ] || SWINQ_BENCH_BATCH=16 $bin/backward --bench
    [ -n "${SKIP_SORT:-}" ] || SWINQ_SORT_SIZES=1048576,16777216,67108864 $bin/sort --bench
}

eval_sets() {
    echo "== evaluation"
    for set in $SETS; do
        echo "fp32 $(ev $set)"
        [ -f $q/anchor_dobi8.safetensors ] || continue
        echo "anchor_dobi8 fake $(ev $set --quantized $q/anchor_dobi8.safetensors --engine fake)"
        echo "anchor_dobi8 int $(ev $set --quantized $q/anchor_dobi8.safetensors --engine int)"
    done | tee "$OUT/evals.txt"
}

# Every carried quantized file (stage's QFILES) on every staged set, fake engine, as JSON
# lines with the file's name.
carried() {
    echo "== carried quantized files on $SETS"
    for f in $here/.dev/q/*.safetensors; do
        [ -f "$f" ] || { echo "no quantized files carried (stage with QFILES)"; return; }
        evals "$f" "{\"file\": \"$(basename "$f")\"}" ""
    done | tee "$OUT/carried.jsonl"
}

# Phase 2 speed: DQC iterations at batch 16 and 32 (64×64 patches), W4, one process alone
# on the GPU. The batch-16 run also times phase 1 (dobi, 32 patches) alone.
phase2() {
    echo "== phase 2 (DQC) time per iteration"
    for b in 16 32; do
        local patches=32; [ $b = 16 ] || patches=8
        $bin/swinq calibrate --weights $W --calib $calib --bits 4 --method 2dquant --patches $patches \
            --phase2-iters ${PHASE2_ITERS:-20} --batch $b --phase2-profile -o $q/w4_2dquant_timing_b$b.safetensors 2>&1 |
            grep -E "phase|done" | tee $q/phase2_b$b.log
    done
}

# Every staged set with the fake engine, and the integer engine on the sets in $3, as JSON
# lines merged with the JSON object $2.
evals() {
    local f=$1 extra=$2 set
    for set in $SETS; do
        EXTRA="$extra" ev $set --quantized "$f" --engine fake
        case " $3 " in *" $set "*) EXTRA="$extra" ev $set --quantized "$f" --engine int ;; esac
    done
}

# One phase 1 job (32 centre patches; DQ: phase 2 iterations too), then its evaluations.
job() {
    local bits=$1 m=$2 iters=${3:-0} f=$q/w${1}_$2.safetensors
    [ "$iters" = 0 ] || f=$q/w${bits}_${m}_dqc${iters}.safetensors
    [ "$(date +%s)" -lt "$deadline" ] || { echo "{\"skipped\": \"w$bits $m $iters\"}"; return; }
    local t0=$SECONDS
    $bin/swinq calibrate --weights $W --calib $calib --bits "$bits" --method "$m" --patches 32 \
        --phase2-iters "$iters" --batch ${DQC_BATCH:-16} -o "$f" >"$f.log" 2>&1 ||
        { echo "{\"failed\": \"w$bits $m $iters\", \"log\": \"$(tail -1 "$f.log")\"}"; return; }
    local extra="{\"method\": \"$m\", \"bits\": $bits, \"phase2_iters\": $iters, \"batch\": ${DQC_BATCH:-16}, \"calib_seconds\": $((SECONDS - t0))}"
    evals "$f" "$extra" "$([ "$bits" = 4 ] || echo Set5 Set14)"
}

# Quality runs under one deadline, all at once (their times are not speed claims): the
# DQC_METHODS with phase 2 (DQC_ITERS iterations of batch DQC_BATCH, by default sized from
# the batch-16 timing to end in time), and the phase 1 ABLATION methods, in that order.
quality() {
    local budget=$((call_end - $(date +%s)))
    export deadline=$(($(date +%s) + budget - 60))
    local iters=${DQC_ITERS:-}
    if [ -z "$iters" ]; then
        # Six DQC processes share the GPU; assume they together go no faster than one alone.
        iters=$(python3 -c 'import re,sys; t=open(sys.argv[1]).read(); p1=float(re.search(r"phase 1 done in ([0-9.]+)", t).group(1)); p2=float(re.search(r"phase 2 done in ([0-9.]+)", t).group(1)) / int(sys.argv[3]); print(max(10, min(3000, int((int(sys.argv[2]) - 90 - 2 * p1) / (6 * p2)))))' \
            $q/phase2_b16.log $budget ${PHASE2_ITERS:-20} 2>/dev/null || echo 50)
    fi
    echo "== quality for $budget s: 2dquant and 2dquant+ with $iters DQC iterations (batch ${DQC_BATCH:-16}), phase 1 ablation; sets $SETS"
    export -f job ev evals
    {
        for b in 4 3 2; do for m in ${DQC_METHODS:-2dquant 2dquant+}; do echo "$b $m $iters"; done; done | xargs -P 6 -L 1 bash -c 'job $0 $1 $2' &
        local jobs=()
        for m in ${ABLATION:-dobi sorted-tail+bias dobi-paper sorted-uniform sorted-uniform+bias minmax sorted-tail dobi+bias dobi+center-mean sorted-tail+bias+onedir}; do
            for b in 3 2 4; do jobs+=("$b $m"); done
        done
        printf '%s\n' "${jobs[@]}" | xargs -P ${ABLATION_JOBS:-2} -L 1 bash -c 'job $0 $1'
        wait
    } | tee "$OUT/quality.jsonl"
    tar -C $q -cf "$OUT/quantized.tar" .
}

run() {
    local start=$SECONDS
    # When the call must end (SWINQ_CALL_SECONDS after this start): `quality` fills the time left.
    export call_end=$(($(date +%s) + ${SWINQ_CALL_SECONDS:-500}))
    exec > >(tee -a "$OUT/log.txt") 2>&1
    setup
    for section in "${@:-check phase1 bench eval_sets phase2 quality}"; do
        for s in $section; do $s; done
    done
    echo "device script: $((SECONDS - start)) s"
}

case "$mode" in
stage) stage ;;
run) shift; run "$@" ;;
*) echo "usage: benches/device.sh stage|run" >&2; exit 2 ;;
esac
