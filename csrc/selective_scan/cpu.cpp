// Selective scan (Mamba S6, as MambaIR's SS2D calls it), C++/OpenMP CPU backend: FORWARD ONLY (inference; there
// is no backward, the Python front differentiates the torch path when gradients are needed).
// Contract: asr_bench/encoders/selective_scan.py. For channel d of D, group g(d) = d / (D / groups), state x in R^N:
//
//   delta_t = softplus(delta[b, d, t] + delta_bias[d])
//   x_t     = exp(delta_t * A[d, :]) * x_{t-1} + (delta_t * B[b, g(d), :, t]) * u[b, d, t]      (x_0 = 0)
//   y[b, d, t] = <x_t, C[b, g(d), :, t]> + D[d] * u[b, d, t]
//
// in float32 whatever the input dtype (float64 and bfloat16 inputs are rounded to float32 first, as the reference
// and mamba_ssm do); the output is float32 (b, D, L).
//
// Why it is fast: the reference walks L Python steps and the chunked form does O(chunk) extra work per step; here
// each (b, d) row is one sequential loop over t with the N-vector state in registers. B and C are re-laid out once
// as (b, groups, L, Np) (Np = N rounded up to a multiple of the 16-lane block, padded with zeros, so a padded lane's
// state stays exactly 0 and adds +0 to the dot product), so step t reads two contiguous runs. The step's N
// exponentials use `exp_lanes`, a branch-free Cephes-style expf that GCC vectorises (glibc's expf has no vector
// variant without -ffast-math, and a scalar call per state entry would dominate). delta_t is computed per row over
// the row's delta, with `softplus_lanes` (PyTorch's threshold-20 softplus from the same exp and a Cephes log1p,
// vectorised; ATen's softplus took 40 % of the time at L = 4096, N = 16).
//
// Determinism: rows (b, d) are independent and each is computed by one thread in an order fixed by the sizes (the
// dot product keeps one partial sum per lane and adds the lanes in a fixed tree), so the result is bit-identical
// for any thread count.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;  // one 64-byte register of floats: the state is processed in blocks of 16

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
  int64_t batch, channels, length, state, groups, padded;
  int64_t per_group() const { return channels / groups; }
};

// One (b, d) row: `bt`, `ct` point at the group's (L, Np) runs, `a` at the channel's Np-padded A row.
void scan_row(const float* u, const float* delta, float bias, const float* a, const float* bt, const float* ct,
              float d_skip, const Shapes& s, float* state, float* dt, float* y) {
  const int64_t np = s.padded;
  std::fill(state, state + np, 0.0f);
#pragma omp simd
  for (int64_t t = 0; t < s.length; ++t) dt[t] = softplus_lanes(delta[t] + bias);
  for (int64_t t = 0; t < s.length; ++t) {
    const float step = dt[t], ut = u[t];
    const float* b = bt + t * np;
    const float* c = ct + t * np;
    float acc[kLanes] = {};
    for (int64_t k = 0; k < np; k += kLanes) {
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) {
        const int64_t n = k + l;
        const float x = exp_lanes(step * a[n]) * state[n] + (step * b[n]) * ut;
        state[n] = x;
        acc[l] += x * c[n];
      }
    }
    for (int64_t width = kLanes / 2; width > 0; width /= 2) {  // a fixed tree: short latency, same order always
      for (int64_t l = 0; l < width; ++l) acc[l] += acc[l + width];
    }
    y[t] = acc[0] + d_skip * ut;
  }
}

// (b, groups, N, L) -> (b, groups, L, Np) float32, zero-padded in the last dimension.
torch::Tensor to_runs(const torch::Tensor& bc, int64_t padded) {
  auto out = torch::zeros({bc.size(0), bc.size(1), bc.size(3), padded}, bc.options().dtype(torch::kFloat));
  out.narrow(3, 0, bc.size(2)).copy_(bc.transpose(2, 3));
  return out;
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
  Shapes s{u.size(0), u.size(1), u.size(2), A.dim() == 2 ? A.size(1) : 0, B.dim() == 4 ? B.size(1) : 0, 0};
  check(A.dim() == 2 && A.size(0) == s.channels, "A must be (D, N)");
  check(B.dim() == 4 && B.size(0) == s.batch && B.size(2) == s.state && B.size(3) == s.length,
        "B must be (b, groups, N, L)");
  check(C.sizes() == B.sizes(), "C must have B's shape (b, groups, N, L)");
  check(s.groups > 0 && s.channels % s.groups == 0, "D must be a multiple of groups");
  check(D.dim() == 1 && D.size(0) == s.channels && delta_bias.dim() == 1 && delta_bias.size(0) == s.channels,
        "D and delta_bias must be (D,)");
  s.padded = (s.state + kLanes - 1) / kLanes * kLanes;

  auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat).contiguous(); };
  const auto uf = f32(u);
  const auto deltaf = f32(delta), biasf = f32(delta_bias);
  auto a = torch::zeros({s.channels, s.padded}, uf.options());
  a.narrow(1, 0, s.state).copy_(A);
  const auto bt = to_runs(B, s.padded), ct = to_runs(C, s.padded);
  const auto df = f32(D);
  auto y = torch::empty({s.batch, s.channels, s.length}, uf.options());

  const float* up = uf.data_ptr<float>();
  const float* deltap = deltaf.data_ptr<float>();
  const float* biasp = biasf.data_ptr<float>();
  const float* ap = a.data_ptr<float>();
  const float* bp = bt.data_ptr<float>();
  const float* cp = ct.data_ptr<float>();
  const float* dp = df.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t run = s.length * s.padded;  // one group's (L, Np) block
  at::parallel_for(0, s.batch * s.channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> state(s.padded), dt(s.length);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.channels, d = row % s.channels;
      const int64_t group = b * s.groups + d / s.per_group();
      scan_row(up + row * s.length, deltap + row * s.length, biasp[d], ap + d * s.padded, bp + group * run,
               cp + group * run, dp[d], s, state.data(), dt.data(), yp + row * s.length);
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
