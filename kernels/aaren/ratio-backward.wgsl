// The gradient of ratio.wgsl's o = w/u in its packed rows [w, u]: dw = do/u and
// du = −Σ_c do_c·w_c/u², both 0 where u = 0, in one launch where tfjs's gradient of a division
// by a broadcast u takes a sum with a workgroup per row.

// needs packed-rows.wgsl

@group(0) @binding(0) var<storage, read> packed: array<f32>; // [rows, K + 1]
@group(0) @binding(1) var<storage, read> dO: array<f32>; // [rows, K]
@group(0) @binding(2) var<storage, read_write> dPacked: array<f32>; // [rows, K + 1]
@group(0) @binding(3) var<uniform> params: Params;

fn element(n: u32) {
  let width = params.K + 1u;
  let row = n / width;
  let c = n % width;
  let first = row * width;
  let u = packed[first + params.K];
  var d = 0.0;
  if (c < params.K) {
    d = dO[row * params.K + c] / u;
  } else {
    for (var j = 0u; j < params.K; j++) { d -= dO[row * params.K + j] * packed[first + j]; }
    d /= u * u;
  }
  dPacked[n] = select(d, 0.0, u == 0.0);
}
