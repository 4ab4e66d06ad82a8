// Shared by the tiled passes by blocks of scores (common/attention-forward-blocks.wgsl,
// attention-backward-dq-blocks.wgsl, attention-backward-dkv-blocks.wgsl): the BR rows of the
// workgroup's own side (queries, or dK/dV's keys) staged in workgroup memory, and the first step
// of a tile of the other side's work, in which invocation (m, r4) forms the 4×4 block of scores of
// row quad m (rows 4m … 4m + 3) and quad r4 of the other side's tile, reading one vec4 of each per
// channel for 16 multiply-adds (a pass by rows reads one for four). Each score is summed in the
// rows' passes' order (per lane of V over the channel groups, then across the lanes:
// common/quad-scores.wgsl), so that every pass meets the forward's statistic. NT = BR
// invocations, tiles of 16 on the other side (BC4 = 4), V of four lanes and KV a multiple of 4
// (src/attention/kernel-source.ts, byBlocks). Expects common/lanes-4.wgsl, common/attention.wgsl
// and the host's `const KV, BR, BC4, RQ, NT` (RQ = 4: a line holding the row mark is written
// once per row of a quad).

const BR4 = BR / 4u;
// channel groups of a row that each invocation of a quad of rows takes in the last step
const KB = KV / 4u;
// a row's stride in sTile: a quad more than its tile's, so that rows four apart, which the last
// step reads side by side, fall in other memory banks
const SS = BC4 + 1u;

// A tile of the own side's rows: [c][l][m] is lane l of channel group c of rows 4m … 4m + 3 (zeros
// past the tile's end), indexed as a QuadTile (common/attention.wgsl)
alias RowTile = array<array<array<vec4<f32>, BR4>, V_LANES>, KV>;

// the rows the scores are formed from (scale·q, or dK/dV's keys)
var<workgroup> rowTile: RowTile;
// row i's scores of the other side's quad r4, then what the pass makes of them: read and written
// through sRead and sWrite, which place it in column sColumn(i, r4) of row i
var<workgroup> sTile: array<array<vec4<f32>, SS>, BR>;

var<private> lid: u32;

// The column of sTile that holds row i's quad r4: the quads' order turns with bits 3 and 4 of the
// row. The last steps read rows 4m + u of eight quads m at once (blockAt), and rows eight apart
// lie 32·SS words apart, in the same memory banks whatever the padding: turned so, each quarter of
// a warp reads distinct banks, and the forward's eight rows at one column cover all 32
// (docs/benchmarks.md).
fn sColumn(i: u32, r4: u32) -> u32 {
  return r4 ^ (((i >> 2u) & 2u) | ((i >> 4u) & 1u));
}

fn sRead(i: u32, r4: u32) -> vec4<f32> {
  return sTile[i][sColumn(i, r4)];
}

fn sWrite(i: u32, r4: u32, x: vec4<f32>) {
  sTile[i][sColumn(i, r4)] = x;
}

// Stages channel group c of row quad m in `tile`, transposed: rows[u] is row 4m + u's group.
fn stageRows(tile: ptr<workgroup, RowTile>, m: u32, c: u32, rows: array<vec4<f32>, 4>) {
  let x = transpose(mat4x4<f32>(rows[0], rows[1], rows[2], rows[3]));
  for (var lane = 0u; lane < 4u; lane++) { (*tile)[c][lane][m] = x[lane]; }
}

// The 4×4 block of products of row quad m of `rows` and quad r4 of the other side's tile `other`,
// row by row (element u: row 4m + u). A lane's partial sum over the channel groups is added to the
// row's total once complete, as the rows' passes sum a score.
fn blockOf(rows: ptr<workgroup, RowTile>, other: ptr<workgroup, QuadTile>, m: u32, r4: u32) -> array<vec4<f32>, 4> {
  var s$ = vec4<f32>(0.0);
  for (var lane = 0u; lane < V_LANES; lane++) {
    var part$ = vec4<f32>(0.0);
    for (var c = 0u; c < KV; c++) {
      let rs = (*rows)[c][lane][m];
      let os = (*other)[c][lane][r4];
      part$ += rs[$u] * os;
    }
    s$ += part$;
  }
  var block: array<vec4<f32>, 4>;
  block[$u] = s$;
  return block;
}

// The scores of the invocation's block (blockAt) with the other side's tile `other`, into sTile.
fn blockScores(other: ptr<workgroup, QuadTile>) {
  let at = blockAt(lid);
  let s = blockOf(&rowTile, other, at.x, at.y);
  sWrite(4u * at.x + $u, at.y, s[$u]);
}

// The quad of the other side's n4 that quarter u of a last step takes at turn `turn`, the four
// quarters taking them in turns (u first): (turn + u) mod n4, from first = u mod n4, computed
// once, so that the loop over quads spends a compare, not an integer division, on each.
fn turnQuad(turn: u32, first: u32, n4: u32) -> u32 {
  let r4 = turn + first;
  return select(r4, r4 - n4, r4 >= n4);
}

// Invocation `index`'s quad of rows m and its second index: the quad r4 of the other side's tile
// whose block of scores it forms, and the quarter u of the channels it takes in a pass's last step.
// The second comes from bits 1 and 3 of the index and m from the others, so that lanes 2k and
// 2k + 1 read the same quad of the tile (or channels) and lanes two apart the same quad of rows.
// An NVIDIA GPU's workgroup memory hands each lane a float a cycle (a vec4 read in four), and in
// two where every lane's address is its neighbour's, one or two lanes over: paired so, a block of
// scores takes four cycles for its 16 multiply-adds where (index / 4, index % 4) took six, and the
// forward's last step reads each value in two, not four (docs/benchmarks.md).
fn blockAt(index: u32) -> vec2u {
  let r4 = ((index >> 1u) & 1u) | ((index >> 2u) & 2u);
  let m = (index & 1u) | ((index >> 1u) & 2u) | ((index >> 4u) << 2u);
  return vec2u(m, r4);
}
