// Meta-upscale, C++/OpenMP CPU backend (forward + backward). Contract: asr_bench/ops/meta_upscale.py.
//
//   out[b,o,i,j] = sum_{c,ky,kx} F[b, c, rs[i]+ky-1, cs[j]+kx-1] * T[rp[i], cp[j], c*9+ky*3+kx, o]   (F = 0 outside)
//
// Why it is fast without an HR-sized buffer: the LR features are copied once into a zero-padded channels-last
// map P (B, h+2, w+2, C), so the 3x3 neighbourhood of output pixel (i, j) is three contiguous runs of 3C
// numbers, P[b, rs[i]+ky, cs[j] .. cs[j]+2, :], ky = 0..2; and the (small) weight table is re-laid out once as
// Tt (Py, Px, O, 3, 3C) so the weights of one output channel and one ky are the matching contiguous run. Every
// pixel is then O dot products of length 9C over memory that stays in cache (an LR row band and one table
// slice), which the compiler vectorises lane-wise (see dot_runs). Memory beyond the output: P, Tt, and in
// the backward a padded channels-last gradient map and per-chunk table partials (bounded, see grad_table).
//
// Determinism: every output element (forward, grad_features, grad_table) is summed in an order fixed by the
// sizes alone, never by the thread count or scheduling: the results are bit-identical run to run and for
// any torch.get_num_threads().
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kRowsPerChunk = 8;                       // output rows per grad_table task
constexpr int64_t kScratchBudgetBytes = int64_t(64) << 20;  // cap on grad_table's per-chunk partials

struct Maps {
  const int64_t* row_source;
  const int64_t* row_phase;
  const int64_t* col_source;
  const int64_t* col_phase;
  int64_t height, width;  // output size
};

struct Dims {
  int64_t batch, channels, lr_h, lr_w, py, px, out_ch;
  int64_t run() const { return 3 * channels; }          // one ky's run: kx = 0..2, all channels
  int64_t taps() const { return 9 * channels; }
  int64_t padded_w() const { return lr_w + 2; }
  int64_t padded_h() const { return lr_h + 2; }
};

// Lanes of the accumulators: one 64-byte vector register of scalar_t. Keeping a separate partial sum per lane
// lets GCC vectorise the reduction without -ffast-math (each lane is an ordinary, ordered sum).
template <typename scalar_t>
constexpr int lanes() {
  return 64 / static_cast<int>(sizeof(scalar_t));
}

// acc[o] = sum_ky sum_t rows[ky][t] * weights[o * 9C + ky * 3C + t], t < 3C, for OB outputs.
template <typename scalar_t, int OB>
inline void dot_runs(const scalar_t* const rows[3], const scalar_t* weights, int64_t run, int64_t taps,
                     scalar_t* result) {
  constexpr int L = lanes<scalar_t>();
  scalar_t acc[OB][L] = {};
  const int64_t vec_end = run - run % L;
  for (int ky = 0; ky < 3; ++ky) {
    const scalar_t* f = rows[ky];
    const scalar_t* w = weights + ky * run;
    for (int64_t t = 0; t < vec_end; t += L) {
      for (int o = 0; o < OB; ++o) {
#pragma omp simd
        for (int l = 0; l < L; ++l) acc[o][l] += f[t + l] * w[o * taps + t + l];
      }
    }
    for (int64_t t = vec_end; t < run; ++t) {
      for (int o = 0; o < OB; ++o) acc[o][0] += f[t] * w[o * taps + t];
    }
  }
  for (int o = 0; o < OB; ++o) {
    scalar_t sum = 0;
    for (int l = 0; l < L; ++l) sum += acc[o][l];
    result[o] = sum;
  }
}

// dst[t] += sum_{o < OB} g[o] * weights[o * 9C + t], t < 3C: one ky's share of a pixel's feature gradient.
template <typename scalar_t, int OB>
inline void axpy_run(scalar_t* dst, const scalar_t* g, const scalar_t* weights, int64_t run, int64_t taps) {
#pragma omp simd
  for (int64_t t = 0; t < run; ++t) {
    scalar_t v = dst[t];
    for (int o = 0; o < OB; ++o) v += g[o] * weights[o * taps + t];
    dst[t] = v;
  }
}

// Output channels are handled in blocks of at most 3 (Meta-SR's RGB is one block), so any O works.
template <typename Fn>
inline void for_output_blocks(int64_t out_ch, Fn&& fn) {
  for (int64_t o0 = 0; o0 < out_ch;) {
    const int64_t left = out_ch - o0;
    const int block = left >= 3 ? 3 : static_cast<int>(left);
    fn(o0, block);
    o0 += block;
  }
}

// Zero-padded channels-last copy of the features: (B, C, h, w) -> (B, h+2, w+2, C).
torch::Tensor padded_channels_last(const torch::Tensor& features) {
  // Written in place (one LR-sized buffer; pad-then-permute would make two).
  auto padded = torch::zeros({features.size(0), features.size(2) + 2, features.size(3) + 2, features.size(1)},
                             features.options());
  padded.narrow(1, 1, features.size(2)).narrow(2, 1, features.size(3)).copy_(features.permute({0, 2, 3, 1}));
  return padded;
}

// (Py, Px, 9C, O) with row c*9+ky*3+kx  <->  (Py, Px, O, 3 [ky], 3 [kx], C): the layout the loops read.
torch::Tensor table_to_runs(const torch::Tensor& table, int64_t channels) {
  const auto py = table.size(0), px = table.size(1), out_ch = table.size(3);
  return table.view({py, px, channels, 3, 3, out_ch}).permute({0, 1, 5, 3, 4, 2}).contiguous();
}

torch::Tensor runs_to_table(const torch::Tensor& runs) {
  // runs (Py, Px, O, 3, 3, C) -> (Py, Px, C*9, O)
  const auto py = runs.size(0), px = runs.size(1), out_ch = runs.size(2), channels = runs.size(5);
  return runs.permute({0, 1, 5, 3, 4, 2}).contiguous().view({py, px, channels * 9, out_ch});
}

// Output lines grouped by a key (source line or phase): CSR offsets + line indices in ascending order.
struct Groups {
  std::vector<int64_t> start;  // n_keys + 1
  std::vector<int64_t> lines;
};

Groups group_by(const int64_t* key, int64_t n, int64_t n_keys) {
  Groups g;
  g.start.assign(n_keys + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++g.start[key[i] + 1];
  for (int64_t k = 0; k < n_keys; ++k) g.start[k + 1] += g.start[k];
  g.lines.resize(n);
  std::vector<int64_t> fill(g.start.begin(), g.start.end() - 1);
  for (int64_t i = 0; i < n; ++i) g.lines[fill[key[i]]++] = i;
  return g;
}

void check_index(const torch::Tensor& index, int64_t limit, const char* name) {
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == torch::kLong,
              "meta_upscale: ", name, " must be a 1-D int64 tensor");
  const int64_t* p = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < index.numel(); ++i) {
    TORCH_CHECK(p[i] >= 0 && p[i] < limit, "meta_upscale: ", name, "[", i, "] = ", p[i], " is outside [0, ",
                limit, ")");
  }
}

Dims check_inputs(const torch::Tensor& features, const torch::Tensor& table, const torch::Tensor& rs,
                  const torch::Tensor& rp, const torch::Tensor& cs, const torch::Tensor& cp) {
  TORCH_CHECK(features.device().is_cpu() && table.device().is_cpu(), "meta_upscale cpp: tensors must be on the CPU");
  TORCH_CHECK(features.dim() == 4 && table.dim() == 4, "meta_upscale: features (B,C,h,w) and table (Py,Px,9C,O)");
  TORCH_CHECK(features.scalar_type() == table.scalar_type(), "meta_upscale: features and table dtypes differ");
  TORCH_CHECK(features.scalar_type() == torch::kFloat || features.scalar_type() == torch::kDouble,
              "meta_upscale cpp: float32 or float64 only");
  Dims d{features.size(0), features.size(1), features.size(2), features.size(3),
         table.size(0),    table.size(1),    table.size(3)};
  TORCH_CHECK(table.size(2) == d.taps(), "meta_upscale: table.shape[2] must be 9*C = ", d.taps());
  TORCH_CHECK(rs.numel() == rp.numel() && cs.numel() == cp.numel(), "meta_upscale: one source and phase per line");
  check_index(rs, d.lr_h, "row_source");
  check_index(rp, d.py, "row_phase");
  check_index(cs, d.lr_w, "col_source");
  check_index(cp, d.px, "col_phase");
  return d;
}

Maps maps_of(const torch::Tensor& rs, const torch::Tensor& rp, const torch::Tensor& cs, const torch::Tensor& cp) {
  return Maps{rs.data_ptr<int64_t>(), rp.data_ptr<int64_t>(), cs.data_ptr<int64_t>(), cp.data_ptr<int64_t>(),
              rs.numel(), cs.numel()};
}

// ------------------------------------------------------------------------------------------------ forward

template <typename scalar_t>
void forward_impl(const scalar_t* padded, const scalar_t* runs, const Maps& m, const Dims& d, scalar_t* out) {
  const int64_t run = d.run(), taps = d.taps();
  const int64_t row_stride = d.padded_w() * d.channels;
  const int64_t plane = m.height * m.width;
  // One task = one output row of one image; a row's pixels share their LR band and row phase.
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
  for (int64_t task = 0; task < d.batch * m.height; ++task) {
    const int64_t b = task / m.height, i = task % m.height;
    const scalar_t* band = padded + (b * d.padded_h() + m.row_source[i]) * row_stride;
    const scalar_t* row_runs = runs + m.row_phase[i] * d.px * d.out_ch * taps;
    scalar_t* dst = out + b * d.out_ch * plane + i * m.width;
    scalar_t result[3];
    for (int64_t j = 0; j < m.width; ++j) {
      const int64_t offset = m.col_source[j] * d.channels;
      const scalar_t* rows[3] = {band + offset, band + row_stride + offset, band + 2 * row_stride + offset};
      const scalar_t* weights = row_runs + m.col_phase[j] * d.out_ch * taps;
      for_output_blocks(d.out_ch, [&](int64_t o0, int block) {
        const scalar_t* w = weights + o0 * taps;
        if (block == 3) dot_runs<scalar_t, 3>(rows, w, run, taps, result);
        else if (block == 2) dot_runs<scalar_t, 2>(rows, w, run, taps, result);
        else dot_runs<scalar_t, 1>(rows, w, run, taps, result);
        for (int o = 0; o < block; ++o) dst[(o0 + o) * plane + j] = result[o];
      });
    }
  }
}

torch::Tensor forward(torch::Tensor features, torch::Tensor table, torch::Tensor row_source, torch::Tensor row_phase,
                      torch::Tensor col_source, torch::Tensor col_phase) {
  features = features.contiguous();
  table = table.contiguous();
  row_source = row_source.contiguous();
  row_phase = row_phase.contiguous();
  col_source = col_source.contiguous();
  col_phase = col_phase.contiguous();
  const Dims d = check_inputs(features, table, row_source, row_phase, col_source, col_phase);
  const Maps m = maps_of(row_source, row_phase, col_source, col_phase);
  auto out = torch::empty({d.batch, d.out_ch, m.height, m.width}, features.options());
  if (out.numel() == 0) return out;
  if (d.channels == 0) return out.zero_();
  const auto padded = padded_channels_last(features);
  const auto runs = table_to_runs(table, d.channels);
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "meta_upscale_cpu_forward", [&] {
    forward_impl<scalar_t>(padded.data_ptr<scalar_t>(), runs.data_ptr<scalar_t>(), m, d, out.data_ptr<scalar_t>());
  });
  return out;
}

// ----------------------------------------------------------------------------------------------- backward

// Feature gradient, gathered per LR row: padded row y receives ky's share of every output row i whose source is
// y - ky. Each task owns one padded row, so there are no write conflicts and the order is fixed.
template <typename scalar_t>
void grad_features_impl(const scalar_t* grad_out, const scalar_t* runs, const Maps& m, const Dims& d,
                        const Groups& by_source, scalar_t* grad_padded) {
  const int64_t run = d.run(), taps = d.taps();
  const int64_t row_stride = d.padded_w() * d.channels;
  const int64_t plane = m.height * m.width;
#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
  for (int64_t task = 0; task < d.batch * d.lr_h; ++task) {
    const int64_t b = task / d.lr_h, y = task % d.lr_h + 1;  // padded row; rows 0 and h+1 are discarded
    scalar_t* band = grad_padded + (b * d.padded_h() + y) * row_stride;
    const scalar_t* g_image = grad_out + b * d.out_ch * plane;
    scalar_t g[3];
    for (int ky = 0; ky < 3; ++ky) {
      const int64_t source = y - ky;
      if (source < 0 || source >= d.lr_h) continue;
      for (int64_t k = by_source.start[source]; k < by_source.start[source + 1]; ++k) {
        const int64_t i = by_source.lines[k];
        const scalar_t* row_runs = runs + m.row_phase[i] * d.px * d.out_ch * taps + ky * run;
        for (int64_t j = 0; j < m.width; ++j) {
          scalar_t* dst = band + m.col_source[j] * d.channels;
          const scalar_t* weights = row_runs + m.col_phase[j] * d.out_ch * taps;
          for_output_blocks(d.out_ch, [&](int64_t o0, int block) {
            for (int o = 0; o < block; ++o) g[o] = g_image[(o0 + o) * plane + i * m.width + j];
            const scalar_t* w = weights + o0 * taps;
            if (block == 3) axpy_run<scalar_t, 3>(dst, g, w, run, taps);
            else if (block == 2) axpy_run<scalar_t, 2>(dst, g, w, run, taps);
            else axpy_run<scalar_t, 1>(dst, g, w, run, taps);
          });
        }
      }
    }
  }
}

// Table gradient: for each row phase, its output rows are cut into chunks (a count fixed by the sizes); each
// chunk sums its pixels into its own (Px, O, 9C) partial, and the partials are added in chunk order. A phase
// with one chunk writes straight into the result.
template <typename scalar_t>
void grad_table_impl(const scalar_t* grad_out, const scalar_t* padded, const Maps& m, const Dims& d,
                     const Groups& by_phase, scalar_t* grad_runs) {
  const int64_t run = d.run(), taps = d.taps();
  const int64_t row_stride = d.padded_w() * d.channels;
  const int64_t plane = m.height * m.width;
  const int64_t slice = d.px * d.out_ch * taps;  // one row phase's share of the table
  const int64_t slice_bytes = slice * static_cast<int64_t>(sizeof(scalar_t));
  const int64_t max_chunks = std::max<int64_t>(1, kScratchBudgetBytes / std::max<int64_t>(1, d.py * slice_bytes));

  struct Task {
    int64_t phase, first, last;  // positions in by_phase.lines
    scalar_t* dst;
  };
  std::vector<Task> tasks;
  std::vector<int64_t> chunks_of(d.py, 0), scratch_of(d.py, -1);
  int64_t scratch_slices = 0;
  for (int64_t a = 0; a < d.py; ++a) {
    const int64_t n = by_phase.start[a + 1] - by_phase.start[a];
    chunks_of[a] = std::min(max_chunks, std::max<int64_t>(1, (n + kRowsPerChunk - 1) / kRowsPerChunk));
    if (chunks_of[a] > 1) scratch_of[a] = scratch_slices, scratch_slices += chunks_of[a];
  }
  std::vector<scalar_t> scratch(scratch_slices * slice);
  for (int64_t a = 0; a < d.py; ++a) {
    const int64_t first = by_phase.start[a], n = by_phase.start[a + 1] - first;
    for (int64_t c = 0; c < chunks_of[a]; ++c) {
      scalar_t* dst = chunks_of[a] == 1 ? grad_runs + a * slice : scratch.data() + (scratch_of[a] + c) * slice;
      tasks.push_back({a, first + n * c / chunks_of[a], first + n * (c + 1) / chunks_of[a], dst});
    }
  }

#pragma omp parallel for schedule(dynamic, 1) num_threads(at::get_num_threads())
  for (int64_t t = 0; t < static_cast<int64_t>(tasks.size()); ++t) {
    const Task task = tasks[t];
    std::fill(task.dst, task.dst + slice, scalar_t(0));
    for (int64_t k = task.first; k < task.last; ++k) {
      const int64_t i = by_phase.lines[k];
      for (int64_t b = 0; b < d.batch; ++b) {
        const scalar_t* band = padded + (b * d.padded_h() + m.row_source[i]) * row_stride;
        const scalar_t* g_row = grad_out + b * d.out_ch * plane + i * m.width;
        for (int64_t j = 0; j < m.width; ++j) {
          const int64_t offset = m.col_source[j] * d.channels;
          scalar_t* acc = task.dst + m.col_phase[j] * d.out_ch * taps;
          for (int64_t o = 0; o < d.out_ch; ++o) {
            const scalar_t go = g_row[o * plane + j];
            scalar_t* acc_o = acc + o * taps;
            for (int ky = 0; ky < 3; ++ky) {
              const scalar_t* f = band + ky * row_stride + offset;
              scalar_t* a_ky = acc_o + ky * run;
#pragma omp simd
              for (int64_t u = 0; u < run; ++u) a_ky[u] += go * f[u];
            }
          }
        }
      }
    }
  }

#pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t a = 0; a < d.py; ++a) {
    if (chunks_of[a] == 1) continue;
    scalar_t* dst = grad_runs + a * slice;
    const scalar_t* part = scratch.data() + scratch_of[a] * slice;
    std::copy(part, part + slice, dst);
    for (int64_t c = 1; c < chunks_of[a]; ++c) {
      const scalar_t* next = part + c * slice;
#pragma omp simd
      for (int64_t u = 0; u < slice; ++u) dst[u] += next[u];
    }
  }
}

std::vector<torch::Tensor> backward(torch::Tensor grad_out, torch::Tensor features, torch::Tensor table,
                                    torch::Tensor row_source, torch::Tensor row_phase, torch::Tensor col_source,
                                    torch::Tensor col_phase) {
  features = features.contiguous();
  table = table.contiguous();
  grad_out = grad_out.contiguous();
  row_source = row_source.contiguous();
  row_phase = row_phase.contiguous();
  col_source = col_source.contiguous();
  col_phase = col_phase.contiguous();
  const Dims d = check_inputs(features, table, row_source, row_phase, col_source, col_phase);
  const Maps m = maps_of(row_source, row_phase, col_source, col_phase);
  TORCH_CHECK(grad_out.scalar_type() == features.scalar_type() && grad_out.dim() == 4 &&
                  grad_out.size(0) == d.batch && grad_out.size(1) == d.out_ch && grad_out.size(2) == m.height &&
                  grad_out.size(3) == m.width,
              "meta_upscale backward: grad_out must be (B, O, H, W) like the forward's output");
  auto grad_features = torch::zeros_like(features);
  auto grad_table = torch::zeros_like(table);
  if (grad_out.numel() == 0 || d.channels == 0) return {grad_features, grad_table};

  const auto padded = padded_channels_last(features);
  const auto runs = table_to_runs(table, d.channels);
  auto grad_padded = torch::zeros_like(padded);
  auto grad_runs = torch::empty_like(runs);
  const Groups by_source = group_by(m.row_source, m.height, d.lr_h);
  const Groups by_phase = group_by(m.row_phase, m.height, d.py);
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "meta_upscale_cpu_backward", [&] {
    grad_features_impl<scalar_t>(grad_out.data_ptr<scalar_t>(), runs.data_ptr<scalar_t>(), m, d, by_source,
                                 grad_padded.data_ptr<scalar_t>());
    grad_table_impl<scalar_t>(grad_out.data_ptr<scalar_t>(), padded.data_ptr<scalar_t>(), m, d, by_phase,
                              grad_runs.data_ptr<scalar_t>());
  });
  grad_features = grad_padded.narrow(1, 1, d.lr_h).narrow(2, 1, d.lr_w).permute({0, 3, 1, 2}).contiguous();
  grad_table = runs_to_table(grad_runs);
  return {grad_features, grad_table};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "asr_bench meta-upscale, C++/OpenMP CPU backend (contract: asr_bench.ops.meta_upscale)";
  m.def("forward", &forward, "out (B,O,H,W) from features, table, row_source, row_phase, col_source, col_phase");
  m.def("backward", &backward, "(grad_features, grad_table) from grad_out and the forward's inputs");
}
