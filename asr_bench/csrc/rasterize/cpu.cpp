// Gaussian rasterizer, C++/OpenMP CPU backend (forward + backward). Maths, cut-offs, binning and ABI: binning.h.
//
// Forward: Gaussians are binned into bands of kBandRows full-width rows; each band (one OpenMP task) adds its
// Gaussians in ascending index order straight into its own rows of the output. No atomics, and every pixel's
// sum has a fixed order, so the result is bit-identical whatever the number of threads.
// Backward: every Gaussian owns its gradients; one task per Gaussian sums over its pixels in a fixed order
// (double accumulators), again without atomics.
// Work is O(sum over Gaussians of the pixels in box ∩ ellipse), never O(N * H * W).
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <cstring>
#include <vector>

#if defined(__SSE__)
#include <immintrin.h>
#endif

#include "binning.h"

namespace {

using asr_raster::Gaussian;

constexpr int kBandRows = 8;
int64_t max_pairs_per_pass = int64_t(1) << 25;  // bounds the memory of the band lists (settable for tests)

// exp for the inner loops: a Cephes-style polynomial (about 1 ulp) that GCC vectorises, unlike libm's expf.
// It is exactly 0 below -104 (where fp32 expf is 0 too) and keeps subnormal results (two-step scaling).
inline float exp_approx(float x) {
  const bool zero = x < -104.0f;
  x = x < -104.0f ? -104.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (floorf would block vectorisation without -ffast-math).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = (y * r) * r + r + 1.0f;
  const int ni = static_cast<int>(n);
  const int n1 = ni >> 1;  // n in [-150, 127]: both halves keep 2^k normal
  const int n2 = ni - n1;
  const float s1 = __builtin_bit_cast(float, (n1 + 127) << 23);
  const float s2 = __builtin_bit_cast(float, (n2 + 127) << 23);
  const float result = (y * s1) * s2;
  return zero ? 0.0f : result;
}

inline float exp_of(float x) { return exp_approx(x); }
inline double exp_of(double x) { return std::exp(x); }

template <typename T>
std::vector<Gaussian<T>> setup(const T* sx, const T* sy, const T* rho, const T* coords, int64_t n, int height,
                               int width, double dmax) {
  std::vector<Gaussian<T>> gs(n);
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t i = 0; i < n; ++i) {
    gs[i] = asr_raster::make_gaussian<T>(sx[i], sy[i], rho[i], coords[2 * i], coords[2 * i + 1], dmax, height,
                                         width);
  }
  return gs;
}

template <typename T>
std::vector<T> pixel_axis(int n) {
  std::vector<T> axis(n);
  for (int i = 0; i < n; ++i) axis[i] = asr_raster::pixel_ndc<T>(i, n);
  return axis;
}

// One Gaussian's contribution to the columns [first, last] of one row: the scalar definition (float64, and float32
// where neither AVX-512 nor AVX2 is compiled in), which GCC vectorises with a scalar remainder.
template <typename T>
inline void splat_row_scalar(const T* __restrict x, int first, int last, T gx, T limit, T a2, T ab, T dy,
                             T row_term, T nh, T cr, T cg, T cb, T* __restrict red, T* __restrict green,
                             T* __restrict blue) {
#pragma omp simd
  for (int w = first; w <= last; ++w) {
    const T dx = x[w] - gx;
    const T v = exp_of(((a2 * dx) * dx - (ab * dx) * dy + row_term) * nh);  // binning.h power_at
    const T value = v * static_cast<T>((dx <= limit) & (dx >= -limit));
    red[w] += value * cr;
    green[w] += value * cg;
    blue[w] += value * cb;
  }
}

bool vector_rows = true;  // false: float32 rows take the scalar code too (tests compare the two bit for bit)

// Columns per block of the vector rows, and blocks per group of interleaved exps (RowScratch leaves a group's
// room past the last block, so the last group needs no remainder case).
#if defined(__AVX512F__)
constexpr int kRowLanes = 16;
constexpr int kExpGroup = 4;
#elif defined(__AVX2__)
constexpr int kRowLanes = 8;
constexpr int kExpGroup = 4;
#else
constexpr int kRowLanes = 16;  // no vector rows: RowScratch is allocated but unused
constexpr int kExpGroup = 4;
#endif

// The rows [r0, r1] of one Gaussian inside one band, each over its columns [first[h - r0], last[h - r0]]
// (first > last: none). Scratch space a thread reuses for every Gaussian (only the vector rows use it).
struct RowScratch {
  std::vector<float> storage;     // `powers` (kRowLanes per block) lies in it, 64-byte aligned
  float* powers;
  std::vector<int64_t> offsets;   // a block's first pixel in the output plane
  std::vector<uint16_t> lanes;    // a block's columns inside its row's span (AVX-512: a bit mask; AVX2: a
                                  // count, and kPastRowEnd)
  explicit RowScratch(int width) {
    const size_t blocks = size_t(kBandRows) * ((width + kRowLanes - 1) / kRowLanes + 1) + kExpGroup;
    storage.resize(kRowLanes * blocks + 16);
    const auto address = reinterpret_cast<uintptr_t>(storage.data());
    powers = storage.data() + ((64 - address % 64) % 64) / sizeof(float);
    offsets.resize(blocks);
    lanes.resize(blocks);
  }
};

// The float32 forward flushes subnormal results to zero (exp(power) for power < -87.3, and products with colours
// below 2^-126): each subnormal result cost this CPU a microcode assist, and about a sixth of all pairs lie in that
// band, which made the exps 1.5x slower (docs/kernels.md). A flushed term is below 1.2e-38, under float rounding of
// any sum above ~1e-31; the CUDA backend keeps subnormals. Scalar and vector rows run under the same mode, so they
// stay bit-identical to each other and at every thread count; float64 keeps its subnormals. (x86's MXCSR is a
// per-thread register: every thread sets it and puts it back.)
template <typename T>
class FlushSubnormals {
 public:
  FlushSubnormals() {
#if defined(__SSE__)
    if constexpr (std::is_same_v<T, float>) {
      saved_ = _mm_getcsr();
      _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
    }
#endif
  }
  ~FlushSubnormals() {
#if defined(__SSE__)
    if constexpr (std::is_same_v<T, float>) _mm_setcsr(saved_);
#endif
  }
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;

 private:
  unsigned saved_ = 0;
};

template <typename T>
inline void splat_rows_scalar(const Gaussian<T>& g, int r0, int r1, const int* first, const int* last, const T* xs,
                              const T* ys, T cr, T cg, T cb, T* out, int width, int64_t plane) {
  const T gx = g.x, limit = g.dmax, a2 = g.inv_a2, ab = g.two_rho_ab, nh = g.neg_half_inv;
  for (int h = r0; h <= r1; ++h) {
    if (first[h - r0] > last[h - r0]) continue;
    const T dy = ys[h] - g.y;
    const T row_term = (g.inv_b2 * dy) * dy;
    // Restrict pointers: the output rows cannot alias the Gaussian, so the loop vectorises.
    T* __restrict red = out + int64_t(h) * width;
    splat_row_scalar(xs, first[h - r0], last[h - r0], gx, limit, a2, ab, dy, row_term, nh, cr, cg, cb, red,
                     red + plane, red + 2 * plane);
  }
}

template <typename T>
inline void splat_rows(const Gaussian<T>& g, int r0, int r1, const int* first, const int* last, const T* xs,
                       const T* ys, T cr, T cg, T cb, T* out, int width, int64_t plane, RowScratch&) {
  splat_rows_scalar(g, r0, r1, first, last, xs, ys, cr, cg, cb, out, width, plane);
}

#if defined(__AVX512F__)
// The same rows with AVX-512 intrinsics, 16 columns per block and a masked block for a row's remainder (rows are
// 10-70 columns, so a scalar remainder cost as much as the vector body). Every operation is the scalar code's,
// in its order, without FMA (the build has -ffp-contract=off): the results are bit-identical to it.
//
// Why three passes (powers of every block, then their exps, then the sums): the exp is a chain of ~20 dependent
// operations, and computed block by block the CPU's scheduler held little more than one chain at a time, so the
// exps ran at their latency (~58 cycles per block). Four blocks' exps interleaved run at the units' throughput.
//
// exp_approx of four 16-lane blocks, written step by step across the four so that the instruction stream itself
// interleaves four independent chains (GCC keeps this order; the CPU's scheduler only looks a few dozen operations
// ahead). The same operations as the scalar exp_approx, lane for lane.
inline void exp_approx16x4(float* p) {
  constexpr int N = 4;
  const __m512 lowest = _mm512_set1_ps(-104.0f), highest = _mm512_set1_ps(88.0f), magic = _mm512_set1_ps(12582912.0f);
  __m512 x[N], n[N], r[N], y[N];
  __mmask16 zero[N];
  for (int j = 0; j < N; ++j) x[j] = _mm512_load_ps(p + 16 * j);
  for (int j = 0; j < N; ++j) zero[j] = _mm512_cmp_ps_mask(x[j], lowest, _CMP_LT_OQ);
  for (int j = 0; j < N; ++j)
    x[j] = _mm512_mask_blend_ps(zero[j], _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x[j], highest, _CMP_GT_OQ), x[j],
                                                              highest), lowest);
  for (int j = 0; j < N; ++j)
    n[j] = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x[j], _mm512_set1_ps(1.44269504088896341f)), magic), magic);
  for (int j = 0; j < N; ++j) r[j] = _mm512_sub_ps(x[j], _mm512_mul_ps(n[j], _mm512_set1_ps(0.693359375f)));
  for (int j = 0; j < N; ++j) r[j] = _mm512_sub_ps(r[j], _mm512_mul_ps(n[j], _mm512_set1_ps(-2.12194440e-4f)));
  for (int j = 0; j < N; ++j) y[j] = _mm512_set1_ps(1.9875691500e-4f);
  for (const float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f}) {
    for (int j = 0; j < N; ++j) y[j] = _mm512_add_ps(_mm512_mul_ps(y[j], r[j]), _mm512_set1_ps(c));
  }
  for (int j = 0; j < N; ++j)
    y[j] = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(y[j], r[j]), r[j]), r[j]), _mm512_set1_ps(1.0f));
  const __m512i bias = _mm512_set1_epi32(127);
  for (int j = 0; j < N; ++j) {
    const __m512i ni = _mm512_cvttps_epi32(n[j]);
    const __m512i n1 = _mm512_srai_epi32(ni, 1);
    const __m512i n2 = _mm512_sub_epi32(ni, n1);
    const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
    const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
    y[j] = _mm512_maskz_mov_ps(static_cast<__mmask16>(~zero[j]), _mm512_mul_ps(_mm512_mul_ps(y[j], s1), s2));
  }
  for (int j = 0; j < N; ++j) _mm512_store_ps(p + 16 * j, y[j]);
}

template <>
inline void splat_rows<float>(const Gaussian<float>& g, int r0, int r1, const int* first, const int* last,
                              const float* xs, const float* ys, float cr, float cg, float cb, float* out, int width,
                              int64_t plane, RowScratch& scratch) {
  if (!vector_rows) {
    splat_rows_scalar(g, r0, r1, first, last, xs, ys, cr, cg, cb, out, width, plane);
    return;
  }
  const __m512 vgx = _mm512_set1_ps(g.x), vlimit = _mm512_set1_ps(g.dmax), vneg = _mm512_set1_ps(-g.dmax);
  const __m512 va2 = _mm512_set1_ps(g.inv_a2), vab = _mm512_set1_ps(g.two_rho_ab), vnh = _mm512_set1_ps(g.neg_half_inv);
  const __m512 outside = _mm512_set1_ps(-256.0f);  // exp_approx16x4 gives exactly 0 here, as the mask did
  float* powers = scratch.powers;
  int64_t* offsets = scratch.offsets.data();
  uint16_t* lanes_of = scratch.lanes.data();
  int blocks = 0;
  for (int h = r0; h <= r1; ++h) {
    const int f = first[h - r0], l = last[h - r0];
    if (f > l) continue;
    const float dy = ys[h] - g.y;
    const __m512 vdy = _mm512_set1_ps(dy), vrow = _mm512_set1_ps((g.inv_b2 * dy) * dy);
    for (int w = f; w <= l; w += 16, ++blocks) {
      const int left = l - w + 1;
      const __mmask16 lanes = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      const __m512 dx = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, xs + w), vgx);
      __m512 p = _mm512_sub_ps(_mm512_mul_ps(_mm512_mul_ps(va2, dx), dx), _mm512_mul_ps(_mm512_mul_ps(vab, dx), vdy));
      p = _mm512_mul_ps(_mm512_add_ps(p, vrow), vnh);
      const __mmask16 inside = _mm512_cmp_ps_mask(dx, vlimit, _CMP_LE_OQ) & _mm512_cmp_ps_mask(dx, vneg, _CMP_GE_OQ);
      _mm512_store_ps(powers + 16 * blocks, _mm512_mask_blend_ps(inside, outside, p));
      offsets[blocks] = int64_t(h) * width + w;
      lanes_of[blocks] = lanes;
    }
  }
  for (int k = 0; k < blocks; k += 4) exp_approx16x4(powers + 16 * k);  // scratch has room for the last group
  const __m512 vr = _mm512_set1_ps(cr), vg = _mm512_set1_ps(cg), vb = _mm512_set1_ps(cb);
  for (int k = 0; k < blocks; ++k) {
    const __m512 value = _mm512_load_ps(powers + 16 * k);
    const __mmask16 lanes = lanes_of[k];
    float* red = out + offsets[k];
    float* green = red + plane;
    float* blue = green + plane;
    _mm512_mask_storeu_ps(red, lanes, _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, red), _mm512_mul_ps(value, vr)));
    _mm512_mask_storeu_ps(green, lanes, _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, green), _mm512_mul_ps(value, vg)));
    _mm512_mask_storeu_ps(blue, lanes, _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, blue), _mm512_mul_ps(value, vb)));
  }
}
#elif defined(__AVX2__)
// The same three passes with AVX2 intrinsics (CPUs without AVX-512, e.g. AMD Zen 2/3): 8 columns per block. As
// above, every operation is the scalar code's, in its order, without FMA: the results are bit-identical to the
// scalar rows. The colour sums avoid masked stores (vmaskmovps): on Zen 3, with every block added by a masked
// load and store, the whole forward took 1.9x as long. A block inside the image's row is loaded whole, the sum
// blended in on the span's columns, and stored whole: the other columns get their own bits back, and they are
// the band's, so no other thread writes them meanwhile. Only a block that reaches past the row's end (which would
// touch the next row, maybe another band's) takes the masked load and store.
//
// exp_approx of N 8-lane blocks, step by step across the N (the reason is the AVX-512 version's, above). AVX2 has
// no mask registers: the "below -104" lanes are folded into the exponent instead (ni = -254 gives s1 = s2 = +0.0,
// and y * 0 * 0 is the scalar code's +0.0, since y is finite), so each chain holds three registers (r, y, ni)
// and four chains nearly fit the 16 ymm registers with the constants (GCC spills one register per group).
template <int N>
inline void exp_approx8xN(float* p) {
  const __m256 lowest = _mm256_set1_ps(-104.0f), highest = _mm256_set1_ps(88.0f), magic = _mm256_set1_ps(12582912.0f);
  __m256 r[N], y[N];
  __m256i ni[N];
  for (int j = 0; j < N; ++j) {
    const __m256 x0 = _mm256_load_ps(p + 8 * j);
    const __m256 zero = _mm256_cmp_ps(x0, lowest, _CMP_LT_OQ);
    const __m256 x = _mm256_blendv_ps(_mm256_blendv_ps(x0, highest, _mm256_cmp_ps(x0, highest, _CMP_GT_OQ)), lowest,
                                      zero);
    const __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), magic), magic);
    r[j] = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
    r[j] = _mm256_sub_ps(r[j], _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
    ni[j] = _mm256_blendv_epi8(_mm256_cvttps_epi32(n), _mm256_set1_epi32(-254), _mm256_castps_si256(zero));
  }
  for (int j = 0; j < N; ++j) y[j] = _mm256_set1_ps(1.9875691500e-4f);
  for (const float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f}) {
    for (int j = 0; j < N; ++j) y[j] = _mm256_add_ps(_mm256_mul_ps(y[j], r[j]), _mm256_set1_ps(c));
  }
  for (int j = 0; j < N; ++j)
    y[j] = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(y[j], r[j]), r[j]), r[j]), _mm256_set1_ps(1.0f));
  const __m256i bias = _mm256_set1_epi32(127);
  for (int j = 0; j < N; ++j) {
    const __m256i n1 = _mm256_srai_epi32(ni[j], 1);
    const __m256i n2 = _mm256_sub_epi32(ni[j], n1);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    _mm256_store_ps(p + 8 * j, _mm256_mul_ps(_mm256_mul_ps(y[j], s1), s2));
  }
}

// A block's lane mask from its count of columns (1..8): kLaneMaskTable + 8 - count holds count ones, then zeros.
alignas(64) constexpr int32_t kLaneMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
constexpr uint16_t kPastRowEnd = 0x100;  // RowScratch::lanes flag: the block's 8 columns reach past the row's end

inline __m256i lane_mask(int count) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMaskTable + 8 - count));
}

// plane[0..7] += value * colour.
inline void add_whole(float* plane, __m256 value, __m256 colour) {
  _mm256_storeu_ps(plane, _mm256_add_ps(_mm256_loadu_ps(plane), _mm256_mul_ps(value, colour)));
}

// The same on the mask's columns; the others keep their bits (see above: the whole block must lie in rows this
// thread owns).
inline void add_blended(float* plane, __m256 value, __m256 colour, __m256 mask) {
  const __m256 old = _mm256_loadu_ps(plane);
  _mm256_storeu_ps(plane, _mm256_blendv_ps(old, _mm256_add_ps(old, _mm256_mul_ps(value, colour)), mask));
}

// The same with a masked load and store, which touch only the mask's columns.
inline void add_masked(float* plane, __m256 value, __m256 colour, __m256i mask) {
  _mm256_maskstore_ps(plane, mask, _mm256_add_ps(_mm256_maskload_ps(plane, mask), _mm256_mul_ps(value, colour)));
}

template <>
inline void splat_rows<float>(const Gaussian<float>& g, int r0, int r1, const int* first, const int* last,
                              const float* xs, const float* ys, float cr, float cg, float cb, float* out, int width,
                              int64_t plane, RowScratch& scratch) {
  if (!vector_rows) {
    splat_rows_scalar(g, r0, r1, first, last, xs, ys, cr, cg, cb, out, width, plane);
    return;
  }
  const __m256 vgx = _mm256_set1_ps(g.x), vlimit = _mm256_set1_ps(g.dmax), vneg = _mm256_set1_ps(-g.dmax);
  const __m256 va2 = _mm256_set1_ps(g.inv_a2), vab = _mm256_set1_ps(g.two_rho_ab), vnh = _mm256_set1_ps(g.neg_half_inv);
  const __m256 outside = _mm256_set1_ps(-256.0f);  // exp_approx8xN gives exactly 0 here, as the mask did
  float* powers = scratch.powers;
  int64_t* offsets = scratch.offsets.data();
  uint16_t* counts = scratch.lanes.data();
  int blocks = 0;
  for (int h = r0; h <= r1; ++h) {
    const int f = first[h - r0], l = last[h - r0];
    if (f > l) continue;
    const float dy = ys[h] - g.y;
    const __m256 vdy = _mm256_set1_ps(dy), vrow = _mm256_set1_ps((g.inv_b2 * dy) * dy);
    for (int w = f; w <= l; w += 8, ++blocks) {
      const int count = std::min(l - w + 1, 8);
      const bool past_row_end = w + 8 > width;
      const __m256 x = past_row_end ? _mm256_maskload_ps(xs + w, lane_mask(count)) : _mm256_loadu_ps(xs + w);
      const __m256 dx = _mm256_sub_ps(x, vgx);
      __m256 p = _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(va2, dx), dx), _mm256_mul_ps(_mm256_mul_ps(vab, dx), vdy));
      p = _mm256_mul_ps(_mm256_add_ps(p, vrow), vnh);
      const __m256 inside = _mm256_and_ps(_mm256_cmp_ps(dx, vlimit, _CMP_LE_OQ), _mm256_cmp_ps(dx, vneg, _CMP_GE_OQ));
      _mm256_store_ps(powers + 8 * blocks, _mm256_blendv_ps(outside, p, inside));
      offsets[blocks] = int64_t(h) * width + w;
      counts[blocks] = static_cast<uint16_t>(count | (past_row_end ? kPastRowEnd : 0));
    }
  }
  for (int k = 0; k < blocks; k += kExpGroup) exp_approx8xN<kExpGroup>(powers + 8 * k);  // room for the last group
  const __m256 vr = _mm256_set1_ps(cr), vg = _mm256_set1_ps(cg), vb = _mm256_set1_ps(cb);
  for (int k = 0; k < blocks; ++k) {
    const __m256 value = _mm256_load_ps(powers + 8 * k);
    float* red = out + offsets[k];
    if (counts[k] == 8) {  // a whole block inside the row: no mask (0.96x without this case)
      add_whole(red, value, vr);
      add_whole(red + plane, value, vg);
      add_whole(red + 2 * plane, value, vb);
    } else if (counts[k] & kPastRowEnd) {
      const __m256i lanes = lane_mask(counts[k] & 0xFF);
      add_masked(red, value, vr, lanes);
      add_masked(red + plane, value, vg, lanes);
      add_masked(red + 2 * plane, value, vb, lanes);
    } else {
      const __m256 lanes = _mm256_castsi256_ps(lane_mask(counts[k]));
      add_blended(red, value, vr, lanes);
      add_blended(red + plane, value, vg, lanes);
      add_blended(red + 2 * plane, value, vb, lanes);
    }
  }
}
#endif

// Adds Gaussians [begin, end) into the bands. Lists are built by counting sort in index order.
template <typename T>
void splat_pass(const std::vector<Gaussian<T>>& gs, int64_t begin, int64_t end, const T* colours,
                const std::vector<T>& xs, const std::vector<T>& ys, int height, int width, T* out) {
  const auto grid = asr_raster::make_grid(height, width, kBandRows, width);
  std::vector<int64_t> start(grid.tiles_y + 1, 0);
  for (int64_t i = begin; i < end; ++i) {
    int ty0, ty1, tx0, tx1;
    if (asr_raster::tile_range(gs[i], grid, &ty0, &ty1, &tx0, &tx1) == 0) continue;
    for (int t = ty0; t <= ty1; ++t) ++start[t + 1];
  }
  for (int t = 0; t < grid.tiles_y; ++t) start[t + 1] += start[t];
  std::vector<int32_t> ids(start[grid.tiles_y]);
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = begin; i < end; ++i) {
    int ty0, ty1, tx0, tx1;
    if (asr_raster::tile_range(gs[i], grid, &ty0, &ty1, &tx0, &tx1) == 0) continue;
    for (int t = ty0; t <= ty1; ++t) ids[fill[t]++] = static_cast<int32_t>(i - begin);
  }

  const int64_t plane = int64_t(height) * width;
#pragma omp parallel num_threads(at::get_num_threads())
  {
    const FlushSubnormals<T> flush;
    RowScratch scratch(width);
#pragma omp for schedule(dynamic, 1)
    for (int band = 0; band < grid.tiles_y; ++band) {
      const int band_first = band * kBandRows;
      const int band_last = std::min(height, band_first + kBandRows) - 1;
      for (int64_t k = start[band]; k < start[band + 1]; ++k) {
        const int64_t i = begin + ids[k];
        const Gaussian<T>& g = gs[i];
        const int r0 = std::max(g.row0, band_first), r1 = std::min(g.row1, band_last);
        // Every row's column span first: their divisions and square roots are independent and overlap, where
        // computing each just before its row put their latency into every row.
        int first[kBandRows], last[kBandRows];
        for (int h = r0; h <= r1; ++h) {
          if (!asr_raster::row_columns(g, ys[h] - g.y, width, &first[h - r0], &last[h - r0])) {
            first[h - r0] = 1;  // no columns (row_columns may have left them unset)
            last[h - r0] = 0;
          }
        }
        splat_rows(g, r0, r1, first, last, xs.data(), ys.data(), colours[3 * i], colours[3 * i + 1],
                   colours[3 * i + 2], out, width, plane, scratch);
      }
    }
  }
}

template <typename T>
void forward_impl(const T* sx, const T* sy, const T* rho, const T* coords, const T* colours, int64_t n, int height,
                  int width, double dmax, T* out) {
  const auto gs = setup(sx, sy, rho, coords, n, height, width, dmax);
  const auto xs = pixel_axis<T>(width);
  const auto ys = pixel_axis<T>(height);
  // Passes over consecutive index ranges keep each pixel's summation order (ascending index) intact.
  int64_t begin = 0, pairs = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bands = asr_raster::is_empty(gs[i]) ? 0 : gs[i].row1 / kBandRows - gs[i].row0 / kBandRows + 1;
    if (pairs + bands > max_pairs_per_pass && i > begin) {
      splat_pass(gs, begin, i, colours, xs, ys, height, width, out);
      begin = i;
      pairs = 0;
    }
    pairs += bands;
  }
  if (begin < n) splat_pass(gs, begin, n, colours, xs, ys, height, width, out);
}

template <typename T>
void backward_impl(const T* sx, const T* sy, const T* rho, const T* coords, const T* colours, const T* grad,
                   int64_t n, int height, int width, double dmax, T* g_sx, T* g_sy, T* g_rho, T* g_coords,
                   T* g_colours) {
  const auto gs = setup(sx, sy, rho, coords, n, height, width, dmax);
  const auto xs = pixel_axis<T>(width);
  const auto ys = pixel_axis<T>(height);
  const int64_t plane = int64_t(height) * width;
#pragma omp parallel for schedule(dynamic, 64) num_threads(at::get_num_threads())
  for (int64_t i = 0; i < n; ++i) {
    const Gaussian<T>& g = gs[i];
    const T cr = colours[3 * i], cg = colours[3 * i + 1], cb = colours[3 * i + 2];
    // Colour sums and the moments of v*G (G = sum_c grad_c * colour_c) in dx, dy.
    double s_r = 0, s_g = 0, s_b = 0, m_x = 0, m_y = 0, m_xx = 0, m_xy = 0, m_yy = 0;
    if (!asr_raster::is_empty(g)) {
      for (int h = g.row0; h <= g.row1; ++h) {
        const T dy = ys[h] - g.y;
        int c0, c1;
        if (!asr_raster::row_columns(g, dy, width, &c0, &c1)) continue;
        const T row_term = (g.inv_b2 * dy) * dy;
        const T gx = g.x, limit = g.dmax, a2 = g.inv_a2, ab = g.two_rho_ab, nh = g.neg_half_inv;
        const T* __restrict gr = grad + int64_t(h) * width;
        const T* __restrict gg = gr + plane;
        const T* __restrict gb = gg + plane;
        const T* __restrict x = xs.data();
        const double dyd = dy;
#pragma omp simd reduction(+ : s_r, s_g, s_b, m_x, m_y, m_xx, m_xy, m_yy)
        for (int w = c0; w <= c1; ++w) {
          const T dx = x[w] - gx;
          const T v = exp_of(((a2 * dx) * dx - (ab * dx) * dy + row_term) * nh);  // binning.h power_at
          const T value = ((dx <= limit) & (dx >= -limit)) ? v : T(0);
          s_r += static_cast<double>(value * gr[w]);
          s_g += static_cast<double>(value * gg[w]);
          s_b += static_cast<double>(value * gb[w]);
          const double vg = static_cast<double>(value * (gr[w] * cr + gg[w] * cg + gb[w] * cb));
          const double dxd = dx;
          m_x += vg * dxd;
          m_y += vg * dyd;
          m_xx += vg * dxd * dxd;
          m_xy += vg * dxd * dyd;
          m_yy += vg * dyd * dyd;
        }
      }
    }
    asr_raster::write_gradients(g, sx[i], sy[i], rho[i], s_r, s_g, s_b, m_x, m_y, m_xx, m_xy, m_yy, i, g_sx, g_sy,
                                g_rho, g_coords, g_colours);
  }
}

void check_inputs(const std::vector<torch::Tensor>& tensors, int64_t n) {
  for (const auto& t : tensors) {
    TORCH_CHECK(t.device().is_cpu(), "rasterize cpp backend: tensors must be on the CPU");
    TORCH_CHECK(t.is_contiguous(), "rasterize cpp backend: tensors must be contiguous");
    TORCH_CHECK(t.scalar_type() == tensors[0].scalar_type(), "rasterize cpp backend: mixed dtypes");
    TORCH_CHECK(t.size(0) == n, "rasterize cpp backend: inputs disagree on the number of Gaussians");
  }
  TORCH_CHECK(n < (int64_t(1) << 31), "rasterize cpp backend: at most 2^31 - 1 Gaussians per call");
}

torch::Tensor forward(torch::Tensor sx, torch::Tensor sy, torch::Tensor rho, torch::Tensor coords,
                      torch::Tensor colours, int64_t height, int64_t width, double dmax) {
  const int64_t n = colours.size(0);
  check_inputs({sx, sy, rho, coords, colours}, n);
  TORCH_CHECK(height >= 2 && width >= 2, "rasterize: output must be at least 2x2");
  auto out = torch::zeros({3, height, width}, colours.options());
  AT_DISPATCH_FLOATING_TYPES(colours.scalar_type(), "rasterize_forward", [&] {
    forward_impl<scalar_t>(sx.data_ptr<scalar_t>(), sy.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(),
                           coords.data_ptr<scalar_t>(), colours.data_ptr<scalar_t>(), n, int(height), int(width),
                           dmax, out.data_ptr<scalar_t>());
  });
  return out;
}

// How many pixel-Gaussian pairs the forward evaluates (box and ellipse cut), for throughput figures.
int64_t evaluated_pairs(torch::Tensor sx, torch::Tensor sy, torch::Tensor rho, torch::Tensor coords,
                        torch::Tensor colours, int64_t height, int64_t width, double dmax) {
  const int64_t n = colours.size(0);
  check_inputs({sx, sy, rho, coords, colours}, n);
  TORCH_CHECK(colours.scalar_type() == torch::kFloat32, "evaluated_pairs: float32 inputs");
  const auto gs = setup(sx.data_ptr<float>(), sy.data_ptr<float>(), rho.data_ptr<float>(), coords.data_ptr<float>(),
                        n, int(height), int(width), dmax);
  const auto ys = pixel_axis<float>(int(height));
  int64_t pairs = 0;
  for (const auto& g : gs) {
    if (asr_raster::is_empty(g)) continue;
    for (int h = g.row0; h <= g.row1; ++h) {
      int c0, c1;
      if (asr_raster::row_columns(g, ys[h] - g.y, int(width), &c0, &c1)) pairs += c1 - c0 + 1;
    }
  }
  return pairs;
}

std::vector<torch::Tensor> backward(torch::Tensor sx, torch::Tensor sy, torch::Tensor rho, torch::Tensor coords,
                                    torch::Tensor colours, torch::Tensor grad, int64_t height, int64_t width,
                                    double dmax) {
  const int64_t n = colours.size(0);
  check_inputs({sx, sy, rho, coords, colours}, n);
  TORCH_CHECK(grad.is_contiguous() && grad.scalar_type() == colours.scalar_type() && grad.dim() == 3 &&
                  grad.size(0) == 3 && grad.size(1) == height && grad.size(2) == width,
              "rasterize cpp backend: grad must be a contiguous (3, H, W) tensor of the inputs' dtype");
  auto g_sx = torch::empty_like(sx), g_sy = torch::empty_like(sy), g_rho = torch::empty_like(rho);
  auto g_coords = torch::empty_like(coords), g_colours = torch::empty_like(colours);
  AT_DISPATCH_FLOATING_TYPES(colours.scalar_type(), "rasterize_backward", [&] {
    backward_impl<scalar_t>(sx.data_ptr<scalar_t>(), sy.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(),
                            coords.data_ptr<scalar_t>(), colours.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), n,
                            int(height), int(width), dmax, g_sx.data_ptr<scalar_t>(), g_sy.data_ptr<scalar_t>(),
                            g_rho.data_ptr<scalar_t>(), g_coords.data_ptr<scalar_t>(),
                            g_colours.data_ptr<scalar_t>());
  });
  return {g_sx, g_sy, g_rho, g_coords, g_colours};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "GSASR Gaussian rasterizer, CPU backend (see csrc/rasterize/binning.h)";
  // The GIL is released while rendering: GSASR renders tiles on several Python threads at once (tile_workers).
  m.def("forward", &forward, "render (3, H, W)", py::call_guard<py::gil_scoped_release>());
  m.def("set_vector_rows", [](bool on) { vector_rows = on; },
        "float32 rows by AVX-512 or AVX2 intrinsics (default, where compiled in) or by the scalar code (tests)");
  m.def("has_vector_rows", []() {
#if defined(__AVX512F__) || defined(__AVX2__)
    return true;
#else
    return false;
#endif
  }, "whether this build has a vector row kernel (AVX-512 or AVX2)");
  m.def("evaluated_pairs", &evaluated_pairs, "pixel-Gaussian pairs the forward evaluates (box and ellipse cut)");
  m.def("backward", &backward, "gradients w.r.t. sigma_x, sigma_y, rho, coords, colours");
  m.def("set_max_pairs_per_pass", [](int64_t limit) { max_pairs_per_pass = limit; },
        "split the forward into passes of at most this many (band, Gaussian) pairs (tests)");
  m.def("exp_approx", [](double x) { return exp_approx(static_cast<float>(x)); }, "the vectorised expf (tests)");
}
