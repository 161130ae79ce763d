// Meta-upscale, CUDA backend (forward + backward). Contract: asr_bench/ops/meta_upscale.py; design: docs/kernels.md.
//
//   out[b,o,i,j] = sum_{c,ky,kx} F[b, c, rs[i]+ky-1, cs[j]+kx-1] * T[rp[i], cp[j], c*9+ky*3+kx, o]   (F = 0 outside)
//
// forward        one thread per output pixel (b, i, j), j fastest; its 9 taps' offsets and validity are worked out
//                once, then the loop over channels reads F (LR, cached) and the pixel's table slice (one per phase
//                pair: a warp touches only a few). No HR-sized buffer, no per-pixel weight tensor.
// grad_features  gathered, one thread per LR element (b, c, y, x): it visits the output rows whose source is
//                y-1..y+1 and the output columns whose source is x-1..x+1 (lists grouped by source line), so
//                no atomics.
// grad_table     one block per (row phase, column phase, channel): its threads stride over the pixels of that
//                phase pair (lists grouped by phase), and a fixed-shape reduction (warp shuffles, then warps in
//                order) sums them, so no atomics.
// Every output element is written by exactly one thread and summed in an order fixed by the sizes: results are
// bit-identical from run to run. float32 and float64 (for gradcheck).
#include <torch/extension.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

// Device guard, current stream, launch check (c10 or a fallback for CPU-only torch builds): see the header.
#include "common/cuda_compat.h"

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

struct Shape {
  int64_t batch, channels, lr_h, lr_w, py, px, out_ch, height, width;
};

// The 3x3 LR neighbourhood of (row, col): flat offsets into one channel plane and which taps lie inside.
struct Taps {
  int64_t offset[9];
  bool inside[9];
};

__device__ __forceinline__ Taps taps_at(int64_t row, int64_t col, int64_t lr_h, int64_t lr_w) {
  Taps t;
#pragma unroll
  for (int ky = 0; ky < 3; ++ky) {
#pragma unroll
    for (int kx = 0; kx < 3; ++kx) {
      const int64_t y = row + ky - 1, x = col + kx - 1;
      const bool inside = y >= 0 && y < lr_h && x >= 0 && x < lr_w;
      t.inside[ky * 3 + kx] = inside;
      t.offset[ky * 3 + kx] = inside ? y * lr_w + x : 0;
    }
  }
  return t;
}

// ------------------------------------------------------------------------------------------------ forward

// OB outputs (o0 .. o0+OB-1) of one pixel per thread; the host launches one kernel per block of <= 3 outputs.
template <typename scalar_t, int OB>
__global__ void __launch_bounds__(kThreads)
forward_kernel(const scalar_t* __restrict__ features, const scalar_t* __restrict__ table,
               const int64_t* __restrict__ row_source, const int64_t* __restrict__ row_phase,
               const int64_t* __restrict__ col_source, const int64_t* __restrict__ col_phase, Shape s, int64_t o0,
               scalar_t* __restrict__ out) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= s.batch * s.height * s.width) return;
  const int64_t j = idx % s.width;
  const int64_t i = (idx / s.width) % s.height;
  const int64_t b = idx / (s.width * s.height);
  const Taps taps = taps_at(row_source[i], col_source[j], s.lr_h, s.lr_w);
  const int64_t plane = s.lr_h * s.lr_w;
  const scalar_t* f = features + b * s.channels * plane;
  const scalar_t* w = table + (row_phase[i] * s.px + col_phase[j]) * 9 * s.channels * s.out_ch + o0;
  scalar_t acc[OB];
#pragma unroll
  for (int o = 0; o < OB; ++o) acc[o] = scalar_t(0);
  for (int64_t c = 0; c < s.channels; ++c) {
#pragma unroll
    for (int k = 0; k < 9; ++k) {
      const scalar_t value = taps.inside[k] ? __ldg(f + taps.offset[k]) : scalar_t(0);
#pragma unroll
      for (int o = 0; o < OB; ++o) acc[o] += value * __ldg(w + k * s.out_ch + o);
    }
    f += plane;
    w += 9 * s.out_ch;
  }
  const int64_t out_plane = s.height * s.width;
#pragma unroll
  for (int o = 0; o < OB; ++o) out[(b * s.out_ch + o0 + o) * out_plane + i * s.width + j] = acc[o];
}

// ----------------------------------------------------------------------------------------------- backward

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
grad_features_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ table,
                     const int64_t* __restrict__ row_phase, const int64_t* __restrict__ col_phase,
                     const int64_t* __restrict__ rows_of_source_start, const int64_t* __restrict__ rows_of_source,
                     const int64_t* __restrict__ cols_of_source_start, const int64_t* __restrict__ cols_of_source,
                     Shape s, scalar_t* __restrict__ grad_features) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= s.batch * s.channels * s.lr_h * s.lr_w) return;
  const int64_t x = idx % s.lr_w;
  const int64_t y = (idx / s.lr_w) % s.lr_h;
  const int64_t c = (idx / (s.lr_w * s.lr_h)) % s.channels;
  const int64_t b = idx / (s.lr_w * s.lr_h * s.channels);
  const int64_t out_plane = s.height * s.width;
  const scalar_t* g = grad_out + b * s.out_ch * out_plane;
  scalar_t acc = 0;
  for (int ky = 0; ky < 3; ++ky) {
    const int64_t source_row = y - ky + 1;  // output rows reading LR row y through tap ky
    if (source_row < 0 || source_row >= s.lr_h) continue;
    for (int64_t m = rows_of_source_start[source_row]; m < rows_of_source_start[source_row + 1]; ++m) {
      const int64_t i = rows_of_source[m];
      const scalar_t* w_row = table + row_phase[i] * s.px * 9 * s.channels * s.out_ch;
      for (int kx = 0; kx < 3; ++kx) {
        const int64_t source_col = x - kx + 1;
        if (source_col < 0 || source_col >= s.lr_w) continue;
        const int64_t tap = c * 9 + ky * 3 + kx;
        for (int64_t n = cols_of_source_start[source_col]; n < cols_of_source_start[source_col + 1]; ++n) {
          const int64_t j = cols_of_source[n];
          const scalar_t* w = w_row + (col_phase[j] * 9 * s.channels + tap) * s.out_ch;
          const scalar_t* go = g + i * s.width + j;
          for (int64_t o = 0; o < s.out_ch; ++o) acc += go[o * out_plane] * __ldg(w + o);
        }
      }
    }
  }
  grad_features[idx] = acc;
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t warp_sum(scalar_t v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// One block per (row phase a, column phase p, channel c): grad_table[a, p, c*9 + k, o0 + o] for k < 9, o < OB.
template <typename scalar_t, int OB>
__global__ void __launch_bounds__(kThreads)
grad_table_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ features,
                  const int64_t* __restrict__ row_source, const int64_t* __restrict__ col_source,
                  const int64_t* __restrict__ rows_of_phase_start, const int64_t* __restrict__ rows_of_phase,
                  const int64_t* __restrict__ cols_of_phase_start, const int64_t* __restrict__ cols_of_phase,
                  Shape s, int64_t o0, scalar_t* __restrict__ grad_table) {
  constexpr int kValues = 9 * OB;
  __shared__ scalar_t partial[kThreads / kWarp][kValues];
  const int64_t block = blockIdx.x;
  const int64_t c = block % s.channels;
  const int64_t p = (block / s.channels) % s.px;
  const int64_t a = block / (s.channels * s.px);
  const int64_t row0 = rows_of_phase_start[a], n_rows = rows_of_phase_start[a + 1] - row0;
  const int64_t col0 = cols_of_phase_start[p], n_cols = cols_of_phase_start[p + 1] - col0;
  const int64_t count = s.batch * n_rows * n_cols;
  const int64_t plane = s.lr_h * s.lr_w, out_plane = s.height * s.width;

  scalar_t acc[kValues];
#pragma unroll
  for (int v = 0; v < kValues; ++v) acc[v] = scalar_t(0);
  for (int64_t q = threadIdx.x; q < count; q += blockDim.x) {
    const int64_t j = cols_of_phase[col0 + q % n_cols];
    const int64_t i = rows_of_phase[row0 + (q / n_cols) % n_rows];
    const int64_t b = q / (n_cols * n_rows);
    const Taps taps = taps_at(row_source[i], col_source[j], s.lr_h, s.lr_w);
    const scalar_t* f = features + (b * s.channels + c) * plane;
    scalar_t go[OB];
#pragma unroll
    for (int o = 0; o < OB; ++o) go[o] = grad_out[(b * s.out_ch + o0 + o) * out_plane + i * s.width + j];
#pragma unroll
    for (int k = 0; k < 9; ++k) {
      const scalar_t value = taps.inside[k] ? __ldg(f + taps.offset[k]) : scalar_t(0);
#pragma unroll
      for (int o = 0; o < OB; ++o) acc[k * OB + o] += value * go[o];
    }
  }
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
#pragma unroll
  for (int v = 0; v < kValues; ++v) {
    const scalar_t sum = warp_sum(acc[v]);
    if (lane == 0) partial[warp][v] = sum;
  }
  __syncthreads();
  if (threadIdx.x < kValues) {
    const int v = threadIdx.x;
    scalar_t total = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x) / kWarp; ++w) total += partial[w][v];
    const int k = v / OB, o = v % OB;
    grad_table[((a * s.px + p) * 9 * s.channels + c * 9 + k) * s.out_ch + o0 + o] = total;
  }
}

// ------------------------------------------------------------------------------------------------- host

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

void check_range(const std::vector<torch::Tensor>& indices, const std::vector<int64_t>& limits) {
  // One device->host copy for all four maps: [min0, max0, min1, max1, ...].
  std::vector<torch::Tensor> bounds;
  for (const auto& index : indices) {
    if (index.numel() == 0) continue;
    bounds.push_back(index.min().view({1}));
    bounds.push_back(index.max().view({1}));
  }
  if (bounds.empty()) return;
  const auto host = torch::cat(bounds).cpu();
  const int64_t* v = host.data_ptr<int64_t>();
  static const char* names[] = {"row_source", "row_phase", "col_source", "col_phase"};
  int64_t k = 0;
  for (size_t m = 0; m < indices.size(); ++m) {
    if (indices[m].numel() == 0) continue;
    TORCH_CHECK(v[k] >= 0 && v[k + 1] < limits[m], "meta_upscale: ", names[m], " has values in [", v[k], ", ",
                v[k + 1], "], outside [0, ", limits[m], ")");
    k += 2;
  }
}

Shape check_inputs(const torch::Tensor& features, const torch::Tensor& table, const std::vector<torch::Tensor>& maps) {
  TORCH_CHECK(features.is_cuda() && table.is_cuda(), "meta_upscale cuda: tensors must be on a CUDA device");
  TORCH_CHECK(features.dim() == 4 && table.dim() == 4, "meta_upscale: features (B,C,h,w) and table (Py,Px,9C,O)");
  TORCH_CHECK(features.scalar_type() == table.scalar_type(), "meta_upscale: features and table dtypes differ");
  TORCH_CHECK(features.scalar_type() == torch::kFloat || features.scalar_type() == torch::kDouble,
              "meta_upscale cuda: float32 or float64 only");
  TORCH_CHECK(features.get_device() == table.get_device(), "meta_upscale cuda: tensors on different devices");
  for (const auto& m : maps) {
    TORCH_CHECK(m.dim() == 1 && m.scalar_type() == torch::kLong && m.device() == features.device(),
                "meta_upscale cuda: the maps must be 1-D int64 tensors on the features' device");
  }
  TORCH_CHECK(maps[0].numel() == maps[1].numel() && maps[2].numel() == maps[3].numel(),
              "meta_upscale: one source and phase per line");
  Shape s{features.size(0), features.size(1), features.size(2), features.size(3), table.size(0),
          table.size(1),    table.size(3),    maps[0].numel(),  maps[2].numel()};
  TORCH_CHECK(table.size(2) == 9 * s.channels, "meta_upscale: table.shape[2] must be 9*C = ", 9 * s.channels);
  check_range(maps, {s.lr_h, s.py, s.lr_w, s.px});
  return s;
}

// Lines grouped by key, ascending line index within a key: (start (n_keys+1), lines (n)).
std::pair<torch::Tensor, torch::Tensor> group_by(const torch::Tensor& key, int64_t n_keys) {
  auto lines = std::get<1>(torch::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  auto counts = torch::bincount(key, {}, n_keys);
  auto start = torch::zeros({n_keys + 1}, key.options());
  start.narrow(0, 1, n_keys).copy_(counts.cumsum(0));
  return {start, lines.contiguous()};
}

template <typename Fn>
void for_output_blocks(int64_t out_ch, Fn&& fn) {
  for (int64_t o0 = 0; o0 < out_ch;) {
    const int block = out_ch - o0 >= 3 ? 3 : static_cast<int>(out_ch - o0);
    fn(o0, block);
    o0 += block;
  }
}

std::vector<torch::Tensor> contiguous_maps(torch::Tensor rs, torch::Tensor rp, torch::Tensor cs, torch::Tensor cp) {
  return {rs.contiguous(), rp.contiguous(), cs.contiguous(), cp.contiguous()};
}

torch::Tensor forward(torch::Tensor features, torch::Tensor table, torch::Tensor row_source, torch::Tensor row_phase,
                      torch::Tensor col_source, torch::Tensor col_phase) {
  const DeviceGuard guard(features.device());
  features = features.contiguous();
  table = table.contiguous();
  const auto maps = contiguous_maps(row_source, row_phase, col_source, col_phase);
  const Shape s = check_inputs(features, table, maps);
  auto out = torch::empty({s.batch, s.out_ch, s.height, s.width}, features.options());
  if (out.numel() == 0) return out;
  if (s.channels == 0) return out.zero_();
  const auto stream = current_stream();
  const int64_t blocks = blocks_for(s.batch * s.height * s.width);
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "meta_upscale_cuda_forward", [&] {
    const auto* f = features.data_ptr<scalar_t>();
    const auto* t = table.data_ptr<scalar_t>();
    const int64_t *rs = maps[0].data_ptr<int64_t>(), *rp = maps[1].data_ptr<int64_t>();
    const int64_t *cs = maps[2].data_ptr<int64_t>(), *cp = maps[3].data_ptr<int64_t>();
    auto* o = out.data_ptr<scalar_t>();
    for_output_blocks(s.out_ch, [&](int64_t o0, int block) {
      if (block == 3) forward_kernel<scalar_t, 3><<<blocks, kThreads, 0, stream>>>(f, t, rs, rp, cs, cp, s, o0, o);
      else if (block == 2) forward_kernel<scalar_t, 2><<<blocks, kThreads, 0, stream>>>(f, t, rs, rp, cs, cp, s, o0, o);
      else forward_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(f, t, rs, rp, cs, cp, s, o0, o);
      check_launch();
    });
  });
  return out;
}

std::vector<torch::Tensor> backward(torch::Tensor grad_out, torch::Tensor features, torch::Tensor table,
                                    torch::Tensor row_source, torch::Tensor row_phase, torch::Tensor col_source,
                                    torch::Tensor col_phase) {
  const DeviceGuard guard(features.device());
  features = features.contiguous();
  table = table.contiguous();
  grad_out = grad_out.contiguous();
  const auto maps = contiguous_maps(row_source, row_phase, col_source, col_phase);
  const Shape s = check_inputs(features, table, maps);
  TORCH_CHECK(grad_out.scalar_type() == features.scalar_type() && grad_out.device() == features.device() &&
                  grad_out.dim() == 4 && grad_out.size(0) == s.batch && grad_out.size(1) == s.out_ch &&
                  grad_out.size(2) == s.height && grad_out.size(3) == s.width,
              "meta_upscale backward: grad_out must be (B, O, H, W) like the forward's output");
  auto grad_features = torch::empty_like(features);
  auto grad_table = torch::empty_like(table);
  if (grad_out.numel() == 0 || s.channels == 0) return {grad_features.zero_(), grad_table.zero_()};

  const auto rows_by_source = group_by(maps[0], s.lr_h);
  const auto cols_by_source = group_by(maps[2], s.lr_w);
  const auto rows_by_phase = group_by(maps[1], s.py);
  const auto cols_by_phase = group_by(maps[3], s.px);
  const auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "meta_upscale_cuda_backward", [&] {
    const auto* go = grad_out.data_ptr<scalar_t>();
    const auto* f = features.data_ptr<scalar_t>();
    const auto* t = table.data_ptr<scalar_t>();
    const int64_t *rs = maps[0].data_ptr<int64_t>(), *rp = maps[1].data_ptr<int64_t>();
    const int64_t *cs = maps[2].data_ptr<int64_t>(), *cp = maps[3].data_ptr<int64_t>();
    if (grad_features.numel() > 0) {
      grad_features_kernel<scalar_t><<<blocks_for(grad_features.numel()), kThreads, 0, stream>>>(
          go, t, rp, cp, rows_by_source.first.data_ptr<int64_t>(), rows_by_source.second.data_ptr<int64_t>(),
          cols_by_source.first.data_ptr<int64_t>(), cols_by_source.second.data_ptr<int64_t>(), s,
          grad_features.data_ptr<scalar_t>());
      check_launch();
    }
    const int64_t blocks = s.py * s.px * s.channels;
    if (blocks == 0) return;
    auto* gt = grad_table.data_ptr<scalar_t>();
    const int64_t *rps = rows_by_phase.first.data_ptr<int64_t>(), *rpl = rows_by_phase.second.data_ptr<int64_t>();
    const int64_t *cps = cols_by_phase.first.data_ptr<int64_t>(), *cpl = cols_by_phase.second.data_ptr<int64_t>();
    for_output_blocks(s.out_ch, [&](int64_t o0, int block) {
      if (block == 3)
        grad_table_kernel<scalar_t, 3><<<blocks, kThreads, 0, stream>>>(go, f, rs, cs, rps, rpl, cps, cpl, s, o0, gt);
      else if (block == 2)
        grad_table_kernel<scalar_t, 2><<<blocks, kThreads, 0, stream>>>(go, f, rs, cs, rps, rpl, cps, cpl, s, o0, gt);
      else
        grad_table_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(go, f, rs, cs, rps, rpl, cps, cpl, s, o0, gt);
      check_launch();
    });
  });
  return {grad_features, grad_table};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "asr_bench meta-upscale, CUDA backend (contract: asr_bench.ops.meta_upscale)";
  m.def("forward", &forward, "out (B,O,H,W) from features, table, row_source, row_phase, col_source, col_phase");
  m.def("backward", &backward, "(grad_features, grad_table) from grad_out and the forward's inputs");
}
