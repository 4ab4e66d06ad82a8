// Shared by the selective-scan kernels that read the gate z (after scan.wgsl).

// silu(z) at a [B, T, E] index, or 1 without a gate
fn gate(j: u32) -> f32 {
  if (HAS_Z) {
    let g = z[j];
    return g * sigmoid(g);
  }
  return 1.0;
}
