// Selective scan (Mamba S6, as MambaIR's SS2D calls it), C++/OpenMP CPU backend: FORWARD ONLY (inference; there
// is no backward, the Python front differentiates the torch path when gradients are needed).
// Contract: asr_bench/ops/selective_scan (its package docstring). For channel d of D, group g(d) = d / (D / groups), state x in R^N:
//
//   delta_t = softplus(delta[b, d, t] + delta_bias[d])
//   x_t     = exp(delta_t * A[d, :]) * x_{t-1} + (delta_t * B[b, g(d), :, t]) * u[b, d, t]      (x_0 = 0)
//   y[b, d, t] = <x_t, C[b, g(d), :, t]> + D[d] * u[b, d, t]
//
// in float32 whatever the input dtype (float64 and bfloat16 inputs are rounded to float32 first, as the reference
// and mamba_ssm do); the output is float32 (b, D, L).
//
// Why it is fast: the reference walks L Python steps and the chunked form does O(chunk) extra work per step; here
// one task scans 16 channels of one group at once, one channel per vector lane: the state is N registers' worth
// (entry n of the 16 channels side by side), B_t[n] and C_t[n] (shared by the group) are broadcast, and y needs no
// horizontal reduction (each lane sums its own n = 0..N-1 in order). Step t's N exponentials use `exp_lanes`, a
// branch-free Cephes-style expf that GCC vectorises (glibc's expf has no vector variant without -ffast-math); delta_t
// uses `softplus_lanes` (PyTorch's threshold-20 softplus from the same exp and a Cephes log1p; ATen's softplus alone
// took 40 % of an earlier version's time at L = 4096, N = 16). Memory beyond the output: B and C transposed to
// (b, groups, L, N) (small) and per thread five (L, 16) / (N, 16) lane blocks.
//
// Determinism: each channel's arithmetic is the same whichever lane, task or thread computes it (tasks are
// independent, the order of every sum is fixed by N), so the result is bit-identical for any thread count.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;  // one 64-byte register of floats: 16 channels of one group are scanned together

// exp(x) for float32, ~1 ulp (Cephes expf's polynomial): x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
// polynomial, times 2^n applied as two power-of-two factors so that n in [-150, 128] (subnormal results, and inf
// above 88.72) needs no branch. x is clamped to [-104, 89] first: below -104 exp rounds to 0, above 89 to inf.
// NaN stays NaN. Written without branches or calls so that `#pragma omp simd` loops vectorise.
inline float exp_lanes(float x) {
  const float clamped = std::min(std::max(x, -104.0f), 89.0f);
  const float fx = clamped * 1.44269504088896341f;
  const float nf = (fx + 12582912.0f) - 12582912.0f;  // round to nearest integer (|fx| < 2^22; no -ffast-math)
  const float r = (clamped - nf * 0.693359375f) - nf * -2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = (p * z + r) + 1.0f;
  const int32_t n = static_cast<int32_t>(nf);
  const int32_t n1 = n / 2, n2 = n - n1;  // each in [-75, 64]: both factors are normal floats
  const float s1 = std::bit_cast<float>((n1 + 127) << 23);
  const float s2 = std::bit_cast<float>((n2 + 127) << 23);
  const float result = (p * s1) * s2;  // p * s1 is exact; one rounding into the subnormal range if any
  return x != x ? x : result;
}

// log(1 + y) for y in [0, 1], ~1 ulp (Cephes logf's polynomial on f in [sqrt(1/2) - 1, sqrt(2) - 1]), without
// rounding 1 + y: f = y when y <= sqrt(2) - 1, else 1 + y = 2 (1 + f) with f = (y - 1) / 2 (both exact).
inline float log1p_unit(float y) {
  const bool high = y > 0.414213562f;
  const float f = high ? (y - 1.0f) * 0.5f : y;
  const float e = high ? 1.0f : 0.0f;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float r = (p * f) * z;
  r = r + e * -2.12194440e-4f;
  r = r - 0.5f * z;
  return (f + r) + e * 0.693359375f;
}

// PyTorch's softplus (beta 1, threshold 20): x above 20, else log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)).
inline float softplus_lanes(float x) {
  const float soft = std::max(x, 0.0f) + log1p_unit(exp_lanes(-std::abs(x)));
  return x > 20.0f ? x : soft;
}

struct Shapes {
  int64_t batch, channels, length, state, groups;
  int64_t per_group() const { return channels / groups; }
  int64_t blocks_per_group() const { return (per_group() + kLanes - 1) / kLanes; }
};

// One task: channels c0 .. c0 + width - 1 (width <= 16) of one group of one image, one channel per lane. The lanes'
// inputs are gathered into (L, 16) blocks first (inactive lanes get u_t = A = 0, so their state stays 0);
// the state is (N, 16): entry n of all 16 channels in one register, with B_t[n] and C_t[n] broadcast.
struct Scratch {
  std::vector<float> dt, u, y, a, state;
  explicit Scratch(const Shapes& s)
      : dt(s.length * kLanes), u(s.length * kLanes), y(s.length * kLanes), a(s.state * kLanes),
        state(s.state * kLanes) {}
};

void scan_block(const float* u, const float* delta, const float* bias, const float* A, const float* bt,
                const float* ct, const float* d_skip, int64_t width, const Shapes& s, Scratch& w, float* y) {
  const int64_t L = s.length, N = s.state;
  // gather: row-contiguous reads of the channels' (L,) rows into (L, 16) lane blocks
  std::fill(w.dt.begin(), w.dt.end(), 0.0f);
  std::fill(w.u.begin(), w.u.end(), 0.0f);
  std::fill(w.a.begin(), w.a.end(), 0.0f);
  std::fill(w.state.begin(), w.state.end(), 0.0f);
  for (int64_t l = 0; l < width; ++l) {
    const float* ur = u + l * L;
    const float* dr = delta + l * L;
    for (int64_t t = 0; t < L; ++t) {
      w.u[t * kLanes + l] = ur[t];
      w.dt[t * kLanes + l] = dr[t] + bias[l];
    }
    for (int64_t n = 0; n < N; ++n) w.a[n * kLanes + l] = A[l * N + n];
  }
#pragma omp simd
  for (int64_t i = 0; i < L * kLanes; ++i) w.dt[i] = softplus_lanes(w.dt[i]);
  float dskip[kLanes] = {};
  for (int64_t l = 0; l < width; ++l) dskip[l] = d_skip[l];

  float* state = w.state.data();
  const float* a = w.a.data();
  for (int64_t t = 0; t < L; ++t) {
    const float* dt = w.dt.data() + t * kLanes;
    const float* ut = w.u.data() + t * kLanes;
    const float* b = bt + t * N;
    const float* c = ct + t * N;
    float acc[kLanes] = {};
    for (int64_t n = 0; n < N; ++n) {
      const float bn = b[n], cn = c[n];
      float* sn = state + n * kLanes;
      const float* an = a + n * kLanes;
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) {
        const float x = exp_lanes(dt[l] * an[l]) * sn[l] + (dt[l] * bn) * ut[l];
        sn[l] = x;
        acc[l] += x * cn;  // summed over n in order: each channel's own sequential sum
      }
    }
    float* yt = w.y.data() + t * kLanes;
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) yt[l] = acc[l] + dskip[l] * ut[l];
  }
  for (int64_t l = 0; l < width; ++l) {  // scatter back to the channels' rows
    float* yr = y + l * L;
    for (int64_t t = 0; t < L; ++t) yr[t] = w.y[t * kLanes + l];
  }
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "selective_scan cpp: ", what); }

torch::Tensor forward(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                      const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
                      const torch::Tensor& delta_bias) {
  for (const auto* t : {&u, &delta, &A, &B, &C, &D, &delta_bias}) {
    check(t->device().is_cpu(), "tensors must be on the CPU");
    check(t->is_floating_point(), "tensors must be floating point");
  }
  check(u.dim() == 3 && delta.sizes() == u.sizes(), "u and delta must be (b, D, L) of one shape");
  Shapes s{u.size(0), u.size(1), u.size(2), A.dim() == 2 ? A.size(1) : 0, B.dim() == 4 ? B.size(1) : 0};
  check(A.dim() == 2 && A.size(0) == s.channels, "A must be (D, N)");
  check(B.dim() == 4 && B.size(0) == s.batch && B.size(2) == s.state && B.size(3) == s.length,
        "B must be (b, groups, N, L)");
  check(C.sizes() == B.sizes(), "C must have B's shape (b, groups, N, L)");
  check(s.groups > 0 && s.channels % s.groups == 0, "D must be a multiple of groups");
  check(D.dim() == 1 && D.size(0) == s.channels && delta_bias.dim() == 1 && delta_bias.size(0) == s.channels,
        "D and delta_bias must be (D,)");

  auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat).contiguous(); };
  const auto uf = f32(u), deltaf = f32(delta), af = f32(A), biasf = f32(delta_bias), df = f32(D);
  // (b, groups, N, L) -> (b, groups, L, N): step t's N values contiguous (small: shared by a group's channels)
  const auto bt = f32(B).transpose(2, 3).contiguous(), ct = f32(C).transpose(2, 3).contiguous();
  auto y = torch::empty({s.batch, s.channels, s.length}, uf.options());

  const float* up = uf.data_ptr<float>();
  const float* deltap = deltaf.data_ptr<float>();
  const float* biasp = biasf.data_ptr<float>();
  const float* ap = af.data_ptr<float>();
  const float* bp = bt.data_ptr<float>();
  const float* cp = ct.data_ptr<float>();
  const float* dp = df.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t per_group = s.per_group(), blocks = s.blocks_per_group(), run = s.length * s.state;
  at::parallel_for(0, s.batch * s.groups * blocks, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(s);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / blocks;  // b * groups + g
      const int64_t b = group / s.groups, g = group % s.groups;
      const int64_t c0 = g * per_group + (task % blocks) * kLanes;  // first channel of the block
      const int64_t width = std::min(kLanes, (g + 1) * per_group - c0);
      const int64_t row = b * s.channels + c0;
      scan_block(up + row * s.length, deltap + row * s.length, biasp + c0, ap + c0 * s.state, bp + group * run,
                 cp + group * run, dp + c0, width, s, scratch, yp + row * s.length);
    }
  });
  return y;
}

// The elementwise helpers on a float32 tensor, so tests can check them against torch.exp / F.softplus densely.
torch::Tensor elementwise(const torch::Tensor& x, const std::string& which) {
  check(which == "exp" || which == "softplus", "elementwise: which must be 'exp' or 'softplus'");
  const auto xf = x.to(torch::kFloat).contiguous();
  auto out = torch::empty_like(xf);
  const float* in = xf.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const bool is_exp = which == "exp";
  for (int64_t i = 0; i < xf.numel(); ++i) o[i] = is_exp ? exp_lanes(in[i]) : softplus_lanes(in[i]);
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "asr-bench selective scan, C++ CPU forward (inference only; no backward)";
  m.def("elementwise", &elementwise, "exp_lanes / softplus_lanes elementwise (for tests)");
  m.def("forward", &forward, "y = selective_scan(u, delta, A, B, C, D, delta_bias), float32 (b, D, L)");
}
