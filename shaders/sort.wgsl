// Portable LSD radix sort of 32-bit keys (src/sort.rs drives it).
//
// Four passes of 8-bit digits, each made of
//   hist         one workgroup per tile of TILE keys: 256-bin histogram in
//                workgroup memory, written digit-major (hist[d * nb + tile]);
//   scan_reduce  reduce-then-scan exclusive prefix sum of the histograms, so that
//   scan_apply   hist[d * nb + tile] becomes the first output slot of digit d's
//                keys from that tile;
//   scatter      the tile is sorted by digit in workgroup memory (two stable
//                4-bit counting splits with packed 16-bit counters), then each
//                key is written to hist[d * nb + tile] + (its rank among the
//                tile's digit-d keys): stable, and coalesced runs per digit.
// f32 sorts map the bits to order-preserving keys as the first pass reads them
// and back as the last pass writes them; the first histogram also flags NaN
// (in the slot after the histograms), and then no scatter writes anything.
// No workgroup ever waits on another (no decoupled look-back, no spinning), so
// the sort is correct without forward-progress guarantees (lavapipe included).
// CPU drivers take hist_runs and scatter_runs instead (see there): the
// histogram's columns are runs of RUN keys that one invocation handles alone.
// clear_flag resets the NaN flag between sorts recorded in one command stream.
//
// Header constants: KPT (keys per invocation, 4, 8 or 16; TILE = 256 * KPT ≤ 4096,
// also the scan's tile), RUN (keys per run).
//
// Every entry point binds a prefix of the same five storage slots, with the same
// types, so a single module serves all of them.

const WG: u32 = 256u;
const TILE: u32 = WG * KPT;
// Workgroup arrays indexed through `pad` (one spare word per 32) to avoid bank
// conflicts on the blocked (t * KPT + k) accesses.
const TILE_PAD: u32 = TILE + TILE / 32u;

struct SortParams {
    // Element count (keys, or the length of the array being scanned).
    n: u32,
    // Number of workgroups doing work (tiles).
    nb: u32,
    // Bit offset of the digit (hist, scatter).
    shift: u32,
    // hist, scatter, scatter_runs: F32_IN | F32_OUT | NAN_CHECK | PAIRS below;
    // scan_apply: 1 when binding 1 holds the offsets from the level above.
    flag: u32,
}

@group(0) @binding(0) var<uniform> p: SortParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read> src2: array<u32>;
@group(0) @binding(4) var<storage, read_write> dst2: array<u32>;
@group(0) @binding(5) var<storage, read> src3: array<u32>;

var<workgroup> ents: array<u32, TILE_PAD>;
// Packed 16-bit counters: cnt[w * 256 + t] holds thread t's counts of nibble w
// (low half) and nibble w + 8 (high half). Reused for the digit offsets after
// the local sort.
var<workgroup> cnt: array<u32, 2048>;
var<workgroup> red: array<u32, 272>;
var<workgroup> bins: array<atomic<u32>, 2048>;

fn pad(i: u32) -> u32 {
    return i + (i >> 5u);
}

fn block_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Exclusive prefix sum of `v` over the 256 invocations: (prefix, total).
// Must be called from uniform control flow.
fn wg_scan(v: u32, t: u32) -> vec2<u32> {
    workgroupBarrier();
    red[t] = v;
    workgroupBarrier();
    if (t < 16u) {
        var s = 0u;
        for (var j = 0u; j < 16u; j++) {
            let x = red[t * 16u + j];
            red[t * 16u + j] = s;
            s += x;
        }
        red[256u + t] = s;
    }
    workgroupBarrier();
    let grp = t / 16u;
    var before = 0u;
    var total = 0u;
    for (var j = 0u; j < 16u; j++) {
        let g = red[256u + j];
        before += select(0u, g, j < grp);
        total += g;
    }
    return vec2<u32>(red[t] + before, total);
}

// ---------------------------------------------------------------- f32 keys

// Pass flags (p.flag of hist, scatter and scatter_runs).
const F32_IN: u32 = 1u;   // the input holds f32 bits: map them to keys on read
const F32_OUT: u32 = 2u;  // write f32 bits back (inverse map) on output
const NAN_CHECK: u32 = 4u; // hist: dst[256 * nb] = 1 when an input is NaN
const PAIRS: u32 = 8u;     // scatter, scatter_runs: move the values (src3 → dst2) too

// to_key and from_key (the order-preserving f32 map) are in common.wgsl.

// The key at src[i] (through the f32 map on the first pass of an f32 sort).
fn load_key(i: u32) -> u32 {
    return key_of(src[i]);
}

// The key of the input word u.
fn key_of(u: u32) -> u32 {
    return select(u, to_key(u), (p.flag & F32_IN) != 0u);
}

// ---------------------------------------------------------------- histogram

// Clears the NaN flag (dst[256 * nb]) inside a recorded command stream, where
// a queue write cannot be ordered between sorts.
@compute @workgroup_size(1)
fn clear_flag() {
    dst[256u * p.nb] = 0u;
}

// Flags NaN (in the slot after the nb histograms) when the raw input word u is one.
fn check_nan(u: u32) {
    if ((p.flag & NAN_CHECK) != 0u && (u & 0x7fffffffu) > 0x7f800000u) {
        dst[256u * p.nb] = 1u;
    }
}

// Eight copies of the 256 bins (bins[d * 8 + (t & 7)]): lanes of a SIMD group
// that share a digit mostly hit different words (and banks), which keeps the
// atomics fast on skewed digits (e.g. the exponent byte of activations).
@compute @workgroup_size(256)
fn hist(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blk = block_id(wid, nwg);
    if (blk >= p.nb) {
        return;
    }
    for (var c = 0u; c < 8u; c++) {
        atomicStore(&bins[c * WG + t], 0u);
    }
    workgroupBarrier();
    let base = blk * TILE;
    let copy = t & 7u;
    for (var k = 0u; k < KPT; k++) {
        let i = base + k * WG + t;
        if (i < p.n) {
            let u = src[i];
            check_nan(u);
            atomicAdd(&bins[((key_of(u) >> p.shift) & 255u) * 8u + copy], 1u);
        }
    }
    workgroupBarrier();
    var sum = 0u;
    for (var c = 0u; c < 8u; c++) {
        sum += atomicLoad(&bins[t * 8u + c]);
    }
    dst[t * p.nb + blk] = sum;
}

// ---------------------------------------------------------------- scan

// dst[blk] = sum of src[blk * TILE .. (blk + 1) * TILE) (clipped to n).
@compute @workgroup_size(256)
fn scan_reduce(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blk = block_id(wid, nwg);
    if (blk >= p.nb) {
        return;
    }
    let base = blk * TILE;
    var s = 0u;
    for (var k = 0u; k < KPT; k++) {
        let i = base + k * WG + t;
        if (i < p.n) {
            s += src[i];
        }
    }
    let r = wg_scan(s, t);
    if (t == 0u) {
        dst[blk] = r.y;
    }
}

// In-place exclusive scan of dst's tile blk, plus src[blk] when p.flag == 1.
@compute @workgroup_size(256)
fn scan_apply(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blk = block_id(wid, nwg);
    if (blk >= p.nb) {
        return;
    }
    let base = blk * TILE;
    for (var k = 0u; k < KPT; k++) {
        let li = k * WG + t;
        let i = base + li;
        var v = 0u;
        if (i < p.n) {
            v = dst[i];
        }
        ents[pad(li)] = v;
    }
    workgroupBarrier();
    var s = 0u;
    for (var k = 0u; k < KPT; k++) {
        let j = pad(t * KPT + k);
        let x = ents[j];
        ents[j] = s;
        s += x;
    }
    var off = 0u;
    if (p.flag == 1u) {
        off = src[blk];
    }
    let r = wg_scan(s, t);
    let add = off + r.x;
    for (var k = 0u; k < KPT; k++) {
        let j = pad(t * KPT + k);
        ents[j] += add;
    }
    workgroupBarrier();
    for (var k = 0u; k < KPT; k++) {
        let li = k * WG + t;
        let i = base + li;
        if (i < p.n) {
            dst[i] = ents[pad(li)];
        }
    }
}

// ---------------------------------------------------------------- scatter

// One stable counting split of the tile's entries by the nibble at `bit`.
fn split_nibble(t: u32, bit: u32) {
    var mine: array<u32, KPT>;
    var rank: array<u32, KPT>;
    for (var w = 0u; w < 8u; w++) {
        cnt[w * WG + t] = 0u;
    }
    // Blocked arrangement: thread t holds the tile's entries t*KPT .. t*KPT+KPT-1.
    for (var k = 0u; k < KPT; k++) {
        let e = ents[pad(t * KPT + k)];
        mine[k] = e;
        let nib = (e >> bit) & 15u;
        let c = (nib & 7u) * WG + t;
        let sh = (nib >> 3u) * 16u;
        let v = cnt[c];
        rank[k] = (v >> sh) & 0xffffu;
        cnt[c] = v + (1u << sh);
    }
    workgroupBarrier();
    // Exclusive scan of cnt in flat order (nibble-major, thread-minor): thread t
    // scans cnt[8t .. 8t+8) serially, then across threads.
    var pre: array<u32, 8>;
    var s = 0u;
    for (var j = 0u; j < 8u; j++) {
        pre[j] = s;
        s += cnt[t * 8u + j];
    }
    let r = wg_scan(s, t);
    // The high halves (nibbles 8..15) come after all low-half (nibbles 0..7) entries.
    let add = r.x + ((r.y & 0xffffu) << 16u);
    for (var j = 0u; j < 8u; j++) {
        cnt[t * 8u + j] = pre[j] + add;
    }
    workgroupBarrier();
    for (var k = 0u; k < KPT; k++) {
        let e = mine[k];
        let nib = (e >> bit) & 15u;
        let sh = (nib >> 3u) * 16u;
        let pos = ((cnt[(nib & 7u) * WG + t] >> sh) & 0xffffu) + rank[k];
        ents[pad(pos)] = e;
    }
    workgroupBarrier();
}

// The digit of a tile entry: keys mode holds the keys themselves, pairs mode
// (local index << 8) | digit.
fn entry_digit(e: u32, pairs: bool) -> u32 {
    return select((e >> p.shift) & 255u, e & 255u, pairs);
}

// Sorts the tile by digit in workgroup memory (stably); afterwards cnt[d] + i is
// the output slot of the entry at sorted position i when its digit is d.
fn local_sort(t: u32, blk: u32, pairs: bool) {
    let base = blk * TILE;
    for (var k = 0u; k < KPT; k++) {
        let li = k * WG + t;
        let i = base + li;
        // Past the end: all ones (digit 255), after every real key since the
        // splits are stable, so the real keys take the first `count` slots.
        var key = 0xffffffffu;
        if (i < p.n) {
            key = load_key(i);
        }
        ents[pad(li)] = select(key, (li << 8u) | ((key >> p.shift) & 255u), pairs);
    }
    workgroupBarrier();
    let bit = select(p.shift, 0u, pairs);
    split_nibble(t, bit);
    split_nibble(t, bit + 4u);
    // Digit t starts at the first sorted slot whose digit is ≥ t (binary search).
    var pos = 0u;
    for (var s = TILE / 2u; s > 0u; s >>= 1u) {
        if (entry_digit(ents[pad(pos + s - 1u)], pairs) < t) {
            pos += s;
        }
    }
    if (entry_digit(ents[pad(pos)], pairs) < t) {
        pos += 1u;
    }
    // (wrapping: slot = first output slot of the digit + i − its first sorted slot)
    cnt[t] = src2[t * p.nb + blk] - pos;
    workgroupBarrier();
}

// Writes the tile's keys (and, with PAIRS, their values) to their output slots.
@compute @workgroup_size(256)
fn scatter(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let blk = block_id(wid, nwg);
    // Nothing is written once the first histogram pass has flagged NaN.
    if (blk >= p.nb || src2[256u * p.nb] != 0u) {
        return;
    }
    let pairs = (p.flag & PAIRS) != 0u;
    local_sort(t, blk, pairs);
    let base = blk * TILE;
    let count = min(TILE, p.n - base);
    let f32_out = (p.flag & F32_OUT) != 0u;
    for (var k = 0u; k < KPT; k++) {
        let i = k * WG + t;
        if (i < count) {
            let e = ents[pad(i)];
            if (pairs) {
                // Tile entries hold (local index << 8) | digit: the key is read again.
                let li = e >> 8u;
                let o = cnt[e & 255u] + i;
                let key = load_key(base + li);
                dst[o] = select(key, from_key(key), f32_out);
                dst2[o] = src3[base + li];
            } else {
                dst[cnt[(e >> p.shift) & 255u] + i] = select(e, from_key(e), f32_out);
            }
        }
    }
}

// ---------------------------------------------------------------- runs (CPU drivers)

// On CPU drivers a load or store with a per-lane address is a scalar loop over the
// lanes and a workgroup runs on one core, so the tile sort's passes over workgroup
// memory and its barriers cost far more than the coalesced writes they buy. There
// each invocation owns a run of RUN consecutive keys (run r: one histogram column,
// hist[d * nb + r], nb runs): hist_runs counts its digits, and after the scan
// scatter_runs writes its keys in order, each to the next slot of its digit
// (stable). Per key and pass: two loads, two counter updates and a store.

// Invocations per workgroup of the runs kernels: few, so that even a tensor of a
// few runs spreads over the CPU's cores.
const RUNS_WG: u32 = 16u;

// This invocation's run: its index r and its keys [first, end) (empty past the last run).
struct Run {
    r: u32,
    first: u32,
    end: u32,
}

fn run_of(wid: vec3<u32>, nwg: vec3<u32>, t: u32) -> Run {
    let r = min(block_id(wid, nwg) * RUNS_WG + t, p.nb);
    return Run(r, r * RUN, min(r * RUN + RUN, p.n));
}

@compute @workgroup_size(RUNS_WG)
fn hist_runs(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let run = run_of(wid, nwg, t);
    if (run.first >= run.end) {
        return;
    }
    var count: array<u32, 256>;
    for (var i = run.first; i < run.end; i++) {
        let u = src[i];
        check_nan(u);
        count[(key_of(u) >> p.shift) & 255u] += 1u;
    }
    for (var d = 0u; d < 256u; d++) {
        dst[d * p.nb + run.r] = count[d];
    }
}

@compute @workgroup_size(RUNS_WG)
fn scatter_runs(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let run = run_of(wid, nwg, t);
    // Nothing is written once the first histogram pass has flagged NaN.
    if (run.first >= run.end || src2[256u * p.nb] != 0u) {
        return;
    }
    var next: array<u32, 256>;
    for (var d = 0u; d < 256u; d++) {
        next[d] = src2[d * p.nb + run.r];
    }
    let f32_out = (p.flag & F32_OUT) != 0u;
    for (var i = run.first; i < run.end; i++) {
        let key = load_key(i);
        let d = (key >> p.shift) & 255u;
        let o = next[d];
        next[d] = o + 1u;
        dst[o] = select(key, from_key(key), f32_out);
        if ((p.flag & PAIRS) != 0u) {
            dst2[o] = src3[i];
        }
    }
}
