// Shared by the split-K decode's first pass, with one invocation per chunk
// (common/attention-split.wgsl), a workgroup (common/attention-split-workgroup.wgsl) or a subgroup
// (common/attention-split-subgroups.wgsl):
// the bindings, the fold of a chunk's keys into a query row's registers, and the write of its
// partial row for the merge pass (common/attention-merge.wgsl); or, when the keys make a single
// chunk (FINISH), of the row's o and statistic, the merge's outputs, so that no merge pass runs:
// a dispatch fewer on decoding's CPU-bound path. Expects common/attention.wgsl,
// common/visibility.wgsl, common/row-registers.wgsl, common/row-whole.wgsl or
// common/row-quarters.wgsl, common/cache-tile.wgsl, common/attend-tile.wgsl, a layout, the row
// hooks and the host's `const KV, KL, BC`.

@group(0) @binding(0) var<storage, read> q: array<V>; // [B, Tq, H, K]
@group(0) @binding(1) var<storage, read> k: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(2) var<storage, read> v: array<V>; // [B, Tk, Hkv, K]
@group(0) @binding(3) var<storage, read> vis: array<i32>; // the packed int inputs
// [B, H, Tq, splits, K]: unnormalised; with FINISH, o [B, Tq, H, K]
@group(0) @binding(4) var<storage, read_write> partO: array<V>;
// [B, H, Tq, splits, 2]: packRow, which the merge reads as vec2s; with FINISH, the statistic [B, H, Tq]
@group(0) @binding(5) var<storage, read_write> partRow: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

// 1 when the launch has one chunk (splits = 1): writeChunk finishes the row.
override FINISH: u32 = 0u;

var<private> row$: RowState;

// A chunk's place: batch row b, head h, query row i, chunk s.
struct Chunk {
  b: u32,
  h: u32,
  i: u32,
  s: u32,
}

// Job `job` of batch row b: the launch is flat over (h, i, s).
fn chunkOf(b: u32, job: u32) -> Chunk {
  return Chunk(b, job / (params.splits * params.Tq), (job / params.splits) % params.Tq, job % params.splits);
}

// Folds into row0 and acc0 the keys of chunk c that its query may see (keyRange), in tiles of
// at most BC keys from the first of them: tiles `folder`, folder + folders, folder + 2·folders, …
// of it. A folder is an invocation, or four lanes sharing the row (common/row-quarters.wgsl).
fn foldChunk(c: Chunk, folder: u32, folders: u32) {
  loadLayout();
  loadQuery(&qi0, ((c.b * params.Tq + c.i) * params.H + c.h) * KV);
  row0 = initRow();
  let keys = keyRange(c.b, c.i, c.i + 1u);
  let end = min((c.s + 1u) * params.chunk, keys.y);
  for (var j0 = max(c.s * params.chunk, keys.x) + folder * BC; j0 < end; j0 += folders * BC) {
    atKey(c.b, kvHead(c.h), j0);
    attendTile(c.b, c.h, c.i, c.i, j0, min(BC, end - j0));
  }
}

// Writes acc0 and packRow as chunk c's partial row; with FINISH, the row's o and statistic as
// the merge would from this one partial. Each lane of a folder writes its channels, and the
// row hooks' rowLead the row's floats.
fn writeChunk(c: Chunk) {
  if (FINISH != 0u) {
    let out = finishRow(&row0);
    let oBase = ((c.b * params.Tq + c.i) * params.H + c.h) * KV;
    for (var x = 0u; x < KL; x++) { partO[oBase + channel(x)] = acc0[x] * out.x; }
    if (rowLead()) { partRow[(c.b * params.H + c.h) * params.Tq + c.i] = out.y; }
    return;
  }
  let at = ((c.b * params.H + c.h) * params.Tq + c.i) * params.splits + c.s;
  for (var x = 0u; x < KL; x++) { partO[at * KV + channel(x)] = acc0[x]; }
  if (rowLead()) {
    let row = packRow(&row0);
    partRow[2u * at] = row.x;
    partRow[2u * at + 1u] = row.y;
  }
}
