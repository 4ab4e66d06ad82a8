// Shared by the kernels that read the attention kernels' packed int inputs (bindVisibility in
// src/attention/kernel-source.ts): the header's fields, where each int input starts (−1 if
// absent) and the mask's strides over the batch and the queries (0 where it is broadcast).
const LENGTHS_AT = 0u;
const OFFSETS_AT = 1u;
const SEG_Q_AT = 2u;
const SEG_K_AT = 3u;
const MASK_AT = 4u;
const MASK_STRIDE_B = 5u;
const MASK_STRIDE_I = 6u;
// where the segment ids' order flags start: 2b + side (0 queries, 1 keys) is 1 when row b's ids
// on that side never decrease (common/segment-order.wgsl)
const ORDER_AT = 7u;
