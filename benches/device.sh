#!/usr/bin/env bash
# One call on a lent GPU machine: correctness there, then every timing the issues ask for.
#   benches/device.sh stage   (here) build release binaries, pack them and the few data files into .dev/
#   benches/device.sh run [SECTION...]   (there, with .dev and .gl carried): setup, then the sections
#       check phase1 bench eval_sets phase2 ablation (default: all); results and log in $OUT
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
              cargo bench --locked --no-run --bench forward --bench sort --message-format=json; } |
            jq -r 'select(.executable != null) | "\(.target.name) \(.executable)"')
    rm -rf .dev && mkdir -p .dev/bin .dev/shared/weights .dev/shared/golden .dev/shared/datasets
    cp target/release/swinq .dev/bin/
    while read -r name exe; do cp "$exe" ".dev/bin/$name"; done <<<"$exes"
    strip .dev/bin/*
    tar -C .dev -cJf .dev/bin.tar.xz bin && rm -rf .dev/bin
    cp "$shared/weights/swinir_light_x2_standin.pth" .dev/shared/weights/
    cp "$shared/golden/standin_x2_bird.safetensors" "$shared/golden/dobi_w4_bounds.json" .dev/shared/golden/
    for set in Set5 Set14; do
        mkdir -p ".dev/shared/datasets/$set/LR_bicubic"
        cp -r "$shared/datasets/$set/HR" ".dev/shared/datasets/$set/"
        cp -r "$shared/datasets/$set/LR_bicubic/X2" ".dev/shared/datasets/$set/LR_bicubic/"
    done
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
    export W=$S/weights/swinir_light_x2_standin.pth calib=$S/datasets/calib/LR_bicubic/X2
    mkdir -p $bin $q
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
    timeout 150 $bin/golden_gpu --test-threads 1 standin_x2_bird 2>&1 | grep -E "test |result|error"
    timeout 150 $bin/kernels --test-threads 1 2>&1 | grep -E "test |result|panicked|error"
    timeout 150 $bin/engines --test-threads 1 2>&1 | grep -E "test |result|panicked|error"
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
    $bin/swinq bench --weights $W --quantized ${BENCH_Q:-$q/w4_dobi.safetensors} --size ${BENCH_SIZES:-64,128,256,512} --repeats 10 --warmup 3 --json > "$OUT/bench.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["device"]); [print("%s² %s: median %.2f ms, min %.2f ms; stages %s" % (t["height"], t["engine"], t["median_ms"], t["min_ms"], {k: round(v, 2) for k, v in t["stages_ms"].items()})) for t in d["timings"]]' "$OUT/bench.json"
    SWINQ_BENCH_SIZES=256 SWINQ_BENCH_REPEATS=10 $bin/forward --bench
    [ -n "${SKIP_SORT:-}" ] || SWINQ_SORT_SIZES=1048576,16777216,67108864 $bin/sort --bench
}

eval_sets() {
    echo "== evaluation"
    for set in Set5 Set14; do
        echo "fp32 $(ev $set)"
        echo "anchor_dobi8 fake $(ev $set --quantized $q/anchor_dobi8.safetensors --engine fake)"
        echo "anchor_dobi8 int $(ev $set --quantized $q/anchor_dobi8.safetensors --engine int)"
    done | tee "$OUT/evals.txt"
}

# Phase 2 speed: DQC iterations at batch 16 and 32 (64×64 patches), W4 from dobi.
phase2() {
    echo "== phase 2 (DQC) time per iteration"
    for b in 16 32; do
        $bin/swinq calibrate --weights $W --calib $calib --bits 4 --method dobi --patches 8 \
            --phase2-iters ${PHASE2_ITERS:-20} --batch $b -o $q/w4_dobi_dqc_b$b.safetensors 2>&1 | grep -E "phase|done"
    done
}

ablation() {
    # Stop starting jobs after this many seconds, so the call ends inside its limit.
    export deadline=$(($(date +%s) + ${SWINQ_DEVICE_BUDGET:-300}))
    echo "== ablation (32 centre patches, fake engine, Set5 and Set14), for ${SWINQ_DEVICE_BUDGET:-300} s"
    job() {
        local bits=$1 m=$2 f=$q/w${1}_$2.safetensors
        [ "$(date +%s)" -lt "$deadline" ] || { echo "skipped w$bits $m"; return; }
        local t0=$SECONDS
        [ -f "$f" ] || $bin/swinq calibrate --weights $W --calib $calib --bits "$bits" --method "$m" --patches 32 -o "$f" >/dev/null 2>&1
        local t1=$SECONDS
        for set in Set5 Set14; do
            for engine in fake int; do
                [ "$engine" = int ] && [ "$set" = Set14 ] && continue
                EXTRA="{\"method\": \"$m\", \"bits\": $bits, \"calib_seconds\": $((t1 - t0))}" ev $set --quantized "$f" --engine $engine
            done
        done
    }
    export -f job ev
    local jobs=()
    for m in dobi sorted-tail+bias; do for b in 4 3 2; do jobs+=("$b $m"); done; done
    for m in minmax dobi-paper sorted-uniform sorted-tail sorted-uniform+bias dobi+bias dobi+center-mean sorted-tail+bias+onedir; do
        for b in 4 3 2; do jobs+=("$b $m"); done
    done
    printf '%s\n' "${jobs[@]}" | xargs -P 3 -L 1 bash -c 'job $0 $1' | tee "$OUT/ablation.jsonl"
    tar -C $q -cf "$OUT/quantized.tar" .
}

run() {
    local start=$SECONDS
    exec > >(tee -a "$OUT/log.txt") 2>&1
    setup
    for section in "${@:-check phase1 bench eval_sets phase2 ablation}"; do
        for s in $section; do $s; done
    done
    echo "device script: $((SECONDS - start)) s"
}

case "$mode" in
stage) stage ;;
run) shift; run "$@" ;;
*) echo "usage: benches/device.sh stage|run" >&2; exit 2 ;;
esac
