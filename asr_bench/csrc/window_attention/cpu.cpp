// Window attention with an additive bias, C++ CPU backend (forward only, float32):
//   out[b, i, h*d:(h+1)*d] = sum_j softmax_j(scale * q[b,h,i,:] . k[b,h,j,:] + bias[h,i,j]) v[b,h,j,:]
// One task per window: its heads' q (scaled), k (transposed) and v (padded to whole vectors) are packed into a
// per-thread buffer in one pass over its tokens; then head by head the (Nq x Nk) scores, their softmax and the
// product with v stay in L1/L2, and the output is written once, heads merged. Why not torch: on the CPU, GSASR's
// windows are 144 tokens with 30-wide heads; torch runs q @ k^T, the bias sum, the softmax and p @ v as four
// passes over a scores tensor, with copies to make operands contiguous and a transpose to merge the heads
// (docs/kernels.md "Window attention").
//
// The AVX2+FMA path (any x86-64 CPU since 2013, AVX-512 ones included) uses register-blocked FMA kernels and a
// polynomial exp; elsewhere the same steps run as plain loops. Both normalise the output row by 1/sum at the end
// (not the scores first), so results equal torch's to float rounding, not bit for bit. Every task writes only its
// own output columns, so the result is the same for any number of threads.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define WA_AVX2 1
#else
#define WA_AVX2 0
#endif

namespace {

// One head of one window: its packed operands (q pre-scaled, k transposed, v padded to whole vectors) and the
// scratch its attention works in (shared by the window's heads, which run one after another).
struct Head {
  int nq, nk, d;
  int nk_pad, d_pad;  // rounded up to whole 8-lane vectors
  float* q;           // nq x d, pre-scaled
  float* kt;          // d x nk_pad, zero-padded columns
  float* v;           // nk x d_pad, zero-padded columns
  float* scores;      // nq x nk_pad: scores, then exp(score - row max)
  float* acc;         // nq x d_pad: unnormalised output
  float* inv_sum;     // nq
};

// A window's heads, packed together in one pass over its tokens. Why one pass: the decoder's q, k and v are slices
// of one projection (a token's heads side by side, 2 KB per token), and on a 480 px tile they lie in DRAM;
// packing head by head would read each token 6 times at a 2 KB stride.
class Window {
 public:
  Window(int heads, int nq, int nk, int d, std::vector<float>& buffer) {
    Head shape{nq, nk, d, (nk + 7) / 8 * 8, (d + 7) / 8 * 8, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
    const size_t per_head = size_t(nq) * d + size_t(d) * shape.nk_pad + size_t(nk) * shape.d_pad;
    const size_t shared = size_t(nq) * shape.nk_pad + size_t(nq) * shape.d_pad + size_t(nq);
    // Zero-filled: the padding columns of kt and lanes of v stay 0, as `pack` writes only the real ones.
    buffer.assign(per_head * heads + shared, 0.0f);
    float* scratch = buffer.data() + per_head * heads;
    for (int h = 0; h < heads; ++h) {
      Head head = shape;
      head.q = buffer.data() + per_head * h;
      head.kt = head.q + size_t(nq) * d;
      head.v = head.kt + size_t(d) * shape.nk_pad;
      head.scores = scratch;
      head.acc = scratch + size_t(nq) * shape.nk_pad;
      head.inv_sum = head.acc + size_t(nq) * shape.d_pad;
      heads_.push_back(head);
    }
  }

  const Head& head(int h) const { return heads_[h]; }

  // q, k, v of one window: token i of head h at base + h * head_step + i * token_step (d contiguous).
  void pack(const float* q_in, int64_t q_head, int64_t q_token, const float* k_in, int64_t k_head, int64_t k_token,
            const float* v_in, int64_t v_head, int64_t v_token, float scale) {
    const int nq = heads_[0].nq, nk = heads_[0].nk, d = heads_[0].d;
    for (int i = 0; i < nq; ++i)
      for (size_t h = 0; h < heads_.size(); ++h) {
        const float* src = q_in + i * q_token + int64_t(h) * q_head;
        float* dst = heads_[h].q + i * d;
        for (int t = 0; t < d; ++t) dst[t] = src[t] * scale;
      }
    for (int j = 0; j < nk; ++j)
      for (size_t h = 0; h < heads_.size(); ++h) {
        const float* k_src = k_in + j * k_token + int64_t(h) * k_head;
        const float* v_src = v_in + j * v_token + int64_t(h) * v_head;
        const Head& dst = heads_[h];
        for (int t = 0; t < d; ++t) dst.kt[t * dst.nk_pad + j] = k_src[t];
        for (int t = 0; t < d; ++t) dst.v[j * dst.d_pad + t] = v_src[t];
      }
  }

 private:
  std::vector<Head> heads_;
};

#if WA_AVX2
// exp for x <= 0 (scores minus their row maximum), Cephes-style: 2^n p(r) with r = x - n ln 2, about 1 ulp;
// inputs below -87 give exp(-87) ~ 1.6e-38 instead of a smaller number, which no row sum (>= 1) can see.
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(_mm256_mul_ps(y, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(two_n));
}

// The first `lanes` (0..8) lanes set.
inline __m256i first_lanes(int lanes) {
  alignas(32) static const int table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8 - std::clamp(lanes, 0, 8)));
}

// scores[i0..i0+R) x [j0..j0+8C) = q . kt + bias, an R x C block of 8-lane vectors held in registers.
template <int R, int C>
inline void score_block(const Head& h, const float* bias, int i0, int j0) {
  __m256 sum[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) sum[r][c] = _mm256_setzero_ps();
  for (int t = 0; t < h.d; ++t) {
    __m256 kv[C];
    for (int c = 0; c < C; ++c) kv[c] = _mm256_loadu_ps(h.kt + t * h.nk_pad + j0 + 8 * c);
    for (int r = 0; r < R; ++r) {
      const __m256 qv = _mm256_broadcast_ss(h.q + (i0 + r) * h.d + t);
      for (int c = 0; c < C; ++c) sum[r][c] = _mm256_fmadd_ps(qv, kv[c], sum[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float* bias_row = bias + int64_t(i0 + r) * h.nk;
    float* row = h.scores + (i0 + r) * h.nk_pad;
    for (int c = 0; c < C; ++c) {
      const int j = j0 + 8 * c;
      const __m256 b = h.nk - j >= 8 ? _mm256_loadu_ps(bias_row + j) : _mm256_maskload_ps(bias_row + j, first_lanes(h.nk - j));
      _mm256_storeu_ps(row + j, _mm256_add_ps(sum[r][c], b));
    }
  }
}

template <int R>
inline void score_rows(const Head& h, const float* bias, int i0) {
  int j0 = 0;
  for (; j0 + 24 <= h.nk_pad; j0 += 24) score_block<R, 3>(h, bias, i0, j0);
  for (; j0 < h.nk_pad; j0 += 8) score_block<R, 1>(h, bias, i0, j0);
}

// acc[i0..i0+R) = p . v over all keys, R rows x DV vectors.
template <int R, int DV>
inline void value_block(const Head& h, int i0) {
  __m256 sum[R][DV];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < DV; ++c) sum[r][c] = _mm256_setzero_ps();
  for (int j = 0; j < h.nk; ++j) {
    for (int r = 0; r < R; ++r) {
      const __m256 p = _mm256_broadcast_ss(h.scores + (i0 + r) * h.nk_pad + j);
      for (int c = 0; c < DV; ++c) sum[r][c] = _mm256_fmadd_ps(p, _mm256_loadu_ps(h.v + j * h.d_pad + 8 * c), sum[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < DV; ++c) _mm256_storeu_ps(h.acc + (i0 + r) * h.d_pad + 8 * c, sum[r][c]);
}

template <int DV>
inline void value_rows(const Head& h) {
  constexpr int R = DV >= 3 ? 2 : 4;  // R x DV accumulators within the 16 registers
  int i = 0;
  for (; i + R <= h.nq; i += R) value_block<R, DV>(h, i);
  for (; i < h.nq; ++i) value_block<1, DV>(h, i);
}

void attend(const Head& h, const float* bias, float* out, int64_t out_step) {
  int i = 0;
  for (; i + 3 <= h.nq; i += 3) score_rows<3>(h, bias, i);
  for (; i < h.nq; ++i) score_rows<1>(h, bias, i);
  for (int r = 0; r < h.nq; ++r) {
    float* row = h.scores + r * h.nk_pad;
    __m256 top = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < h.nk_pad; j += 8) {
      const __m256 s = _mm256_loadu_ps(row + j);
      top = _mm256_max_ps(top, h.nk - j >= 8 ? s : _mm256_blendv_ps(top, s, _mm256_castsi256_ps(first_lanes(h.nk - j))));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, top);
    const __m256 row_max = _mm256_set1_ps(*std::max_element(lanes, lanes + 8));
    __m256 total = _mm256_setzero_ps();
    for (int j = 0; j < h.nk_pad; j += 8) {
      __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(row + j), row_max));
      if (h.nk - j < 8) e = _mm256_and_ps(e, _mm256_castsi256_ps(first_lanes(h.nk - j)));
      _mm256_storeu_ps(row + j, e);
      total = _mm256_add_ps(total, e);
    }
    _mm256_store_ps(lanes, total);
    float sum = 0.0f;
    for (float lane : lanes) sum += lane;
    h.inv_sum[r] = 1.0f / sum;
  }
  switch (h.d_pad / 8) {
    case 1: value_rows<1>(h); break;
    case 2: value_rows<2>(h); break;
    case 3: value_rows<3>(h); break;
    default: value_rows<4>(h); break;  // d <= 32 (checked by the caller)
  }
  for (int r = 0; r < h.nq; ++r) {
    const __m256 inv = _mm256_set1_ps(h.inv_sum[r]);
    const float* a = h.acc + r * h.d_pad;
    float* o = out + r * out_step;
    int t = 0;
    for (; t + 8 <= h.d; t += 8) _mm256_storeu_ps(o + t, _mm256_mul_ps(_mm256_loadu_ps(a + t), inv));
    if (t < h.d) {  // the row's last lanes: the next lanes are another head's (maybe another thread's) columns,
      // and a masked store (vmaskmovps) is microcoded on AMD Zen: measured 20 us of an 85 us head. Scalar copies.
      alignas(32) float last[8];
      _mm256_store_ps(last, _mm256_mul_ps(_mm256_loadu_ps(a + t), inv));
      std::copy(last, last + (h.d - t), o + t);
    }
  }
}
constexpr int kMaxHeadDim = 32;
#else
// The same steps as plain loops (CPUs without AVX2+FMA).
void attend(const Head& h, const float* bias, float* out, int64_t out_step) {
  for (int i = 0; i < h.nq; ++i) {
    float* row = h.scores + i * h.nk_pad;
    float row_max = -INFINITY;
    for (int j = 0; j < h.nk; ++j) {
      float s = 0.0f;
      for (int t = 0; t < h.d; ++t) s += h.q[i * h.d + t] * h.kt[t * h.nk_pad + j];
      row[j] = s + bias[int64_t(i) * h.nk + j];
      row_max = std::max(row_max, row[j]);
    }
    float sum = 0.0f;
    for (int j = 0; j < h.nk; ++j) sum += (row[j] = std::exp(row[j] - row_max));
    for (int t = 0; t < h.d; ++t) {
      float a = 0.0f;
      for (int j = 0; j < h.nk; ++j) a += row[j] * h.v[j * h.d_pad + t];
      out[i * out_step + t] = a * (1.0f / sum);
    }
  }
}
constexpr int kMaxHeadDim = 1 << 20;
#endif

// q (B, H, Nq, d), k and v (B, H, Nk, d): any strides with d contiguous; bias (H, Nq, Nk) -> out (B, Nq, H*d).
torch::Tensor forward(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor bias, double scale) {
  TORCH_CHECK(q.device().is_cpu() && k.device().is_cpu() && v.device().is_cpu() && bias.device().is_cpu(),
              "window_attention cpp backend: CPU tensors");
  for (const auto& t : {q, k, v, bias})
    TORCH_CHECK(t.scalar_type() == torch::kFloat32, "window_attention cpp backend: float32 tensors");
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "window_attention: q, k, v are (B, heads, N, d)");
  const int64_t b = q.size(0), heads = q.size(1), nq = q.size(2), d = q.size(3), nk = k.size(2);
  TORCH_CHECK(k.size(0) == b && v.size(0) == b && k.size(1) == heads && v.size(1) == heads && v.size(2) == nk &&
                  k.size(3) == d && v.size(3) == d,
              "window_attention: q, k, v disagree in shape");
  TORCH_CHECK(d <= kMaxHeadDim, "window_attention cpp backend: head dim at most ", kMaxHeadDim);
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1,
              "window_attention cpp backend: the head dim must be contiguous");
  bias = bias.contiguous();
  TORCH_CHECK(bias.dim() == 3 && bias.size(0) == heads && bias.size(1) == nq && bias.size(2) == nk,
              "window_attention: bias is (heads, Nq, Nk)");
  auto out = torch::empty({b, nq, heads * d}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const float* bp = bias.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, b, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer;
    Window window(int(heads), int(nq), int(nk), int(d), buffer);
    for (int64_t w = begin; w < end; ++w) {
      window.pack(qp + w * q.stride(0), q.stride(1), q.stride(2), kp + w * k.stride(0), k.stride(1), k.stride(2),
                  vp + w * v.stride(0), v.stride(1), v.stride(2), static_cast<float>(scale));
      for (int64_t h = 0; h < heads; ++h) attend(window.head(int(h)), bp + h * nq * nk, op + w * nq * heads * d + h * d, heads * d);
    }
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "window attention with an additive bias, CPU backend (forward only; csrc/window_attention/cpu.cpp)";
  // The GIL is released: GSASR runs tiles on several Python threads at once (tile_workers).
  m.def("forward", &forward, "softmax(scale q k^T + bias) v, heads merged -> (B, Nq, heads*d)",
        py::call_guard<py::gil_scoped_release>());
  m.def("vectorised", []() { return bool(WA_AVX2); }, "whether this build has the AVX2+FMA kernels");
}
