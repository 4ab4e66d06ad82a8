// The compute ceilings the bench's profile sets the attention passes against (bench/ceiling.ts):
// vec4 multiply-adds into C accumulators, their second factor from registers alone or read from
// workgroup memory, as the passes' loops over channels are built. SPREAD = 1: every lane reads the
// same vec4 at once, as the passes by rows read a key; SPREAD = 8: lane l reads vec4 (l / PAIR) % 8
// of a row of eight side by side (no bank conflict), PAIR = 2 as a block of scores reads its quads
// (neighbouring lanes alike), 1 with no two neighbours alike. Each invocation runs `passes` sweeps
// of the SLOTS staged rows, STEP rows a step: one serving all C accumulators (STEP = 1, C products
// a read), or one for each (STEP = C, one product a read, the registers of C accumulators and
// their factors held). Its output is the sum of its accumulators, so that no product can be
// dropped, and with small whole inputs it is exact. The host writes each line holding `$` once
// per accumulator (C copies), and gives `const STEP, SPREAD, PAIR` and `const READS` (false: the
// second factor from four registers instead). Needs common/grid.wgsl.

struct Params {
  passes: u32, // sweeps of the staged vec4s
}

// vec4 r % SPREAD of row r / SPREAD staged (at least SLOTS·SPREAD); the first C also the
// accumulators' factors, the first four the registers' values
@group(0) @binding(0) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> output: array<vec4<f32>>; // one per invocation
@group(0) @binding(2) var<uniform> params: Params;

const SLOTS = 32u;
var<workgroup> slots: array<array<vec4<f32>, SPREAD>, SLOTS>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  for (var e = lid; e < SLOTS * SPREAD; e += WG) { slots[e / SPREAD][e % SPREAD] = input[e]; }
  workgroupBarrier();
  let column = (lid / PAIR) % SPREAD;
  // the accumulators and their factors, one copy a line per accumulator (src/webgpu/copies.ts), as
  // the passes keep their rows' accumulators
  let f$ = input[$u];
  var acc$ = vec4<f32>(0.0);
  var held: array<vec4<f32>, 4>;
  for (var j = 0u; j < 4u; j++) { held[j] = input[j]; }
  for (var p = 0u; p < params.passes; p++) {
    for (var x = 0u; x < SLOTS; x += STEP) {
      if (STEP == 1u) {
        // one row a step, for every accumulator
        var w: vec4<f32>;
        if (READS) { w = slots[x][column]; } else { w = held[x % 4u]; }
        acc$ += w * f$;
      } else {
        // a row a step for each accumulator, from workgroup memory
        acc$ += slots[x + $u][column] * f$;
      }
    }
  }
  var sum = vec4<f32>(0.0);
  sum += acc$;
  output[flatIndex(wid, nwg, lid)] = sum;
}
