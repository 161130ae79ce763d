// Gaussian rasterizer (GSASR): per-Gaussian setup, exact cut-offs and screen-tile binning.
//
// Shared by cpu.cpp and cuda.cu (every function is __host__ __device__ under nvcc), so that both backends
// visit exactly the same pixels and use the same constants as the official kernel (docs/methods/gsasr.md §4.2).
//
// ---- What is rendered -------------------------------------------------------------------------------
// image[c, h, w] = sum_n colour[n, c] * exp(power_n(h, w)) over Gaussians n whose box holds the pixel:
//   dx = X_w - x_n, dy = Y_h - y_n with X_w = float((2.0*w)/(W-1) - 1.0) (align_corners=True NDC),
//   box: |dx| <= dmax and |dy| <= dmax, tested in float against float(dmax), inclusive,
//   power = ((inv_a2*dx)*dx - (two_rho_ab*dx)*dy + (inv_b2*dy)*dy) * neg_half_inv   (this order, no FMA)
//   with the constants of `make_gaussian` (double where gs.cu computes in double, then stored as float).
//
// ---- The exact cut (why skipping pixels changes nothing) --------------------------------------------
// fp32 expf(x) is exactly 0 for x < ln(2^-150) = -103.97 (double exp: x < -745.13). Let u = dx/a, v = dy/b,
// P = (u^2 - 2 rho u v + v^2) / (2 (1 - rho^2)) the exact value of -power. Completing the square,
//   P = ((u - rho v)^2 + (1 - rho^2) v^2) / (2 (1 - rho^2)),
// so P >= C wherever |v| > sqrt(2C), and, on a row with |v| <= sqrt(2C), wherever
//   |u - rho v| > sqrt((2C - v^2)(1 - rho^2)).
// The computed power differs from -P by a relative error below ~16 eps / (1 - |rho|) (the cancellation in
// u^2 - 2 rho u v + v^2 is bounded by (u^2 + v^2) <= (u^2 - 2 rho u v + v^2) / (1 - |rho|)), i.e. < 1e-4 when
// 1 - |rho| >= 1e-2. We therefore cut at C = ZeroPower * 1.02 and only when 1 - |rho| >= 1e-2 (otherwise the
// dmax box alone is used): every pixel skipped has a computed power < -104, whose exp is exactly 0 in fp32,
// so the image and the gradients (each term carries the factor exp(power)) are unchanged. Pixel ranges carry
// one column/row of slack on each side to absorb the rounding of X_w and dx.
//
// ---- Binning (how a backend finds the Gaussians of a tile) ------------------------------------------
// The image is cut into tiles of tile_h x tile_w pixels (CPU: bands of 8 full rows; GPU: e.g. 16 x 16).
// Each Gaussian's pixel bbox [row0, row1] x [col0, col1] (the dmax box intersected with the ellipse bbox,
// clamped to the image) touches the tiles `tile_range` returns. The pairs (tile, gaussian) are ordered by
// tile, then by gaussian index (CPU: counting sort in index order; GPU: count -> exclusive scan -> fill ->
// stable sort by tile key). A tile then sums its Gaussians in ascending index order, with no atomics, so
// every pixel's sum has the same order on every run and for every thread count: deterministic.
// Inside a tile, each (Gaussian, row) pair calls `row_columns` for the exact column span, then evaluates the
// box test and the power per pixel.
//
// ---- Backend ABI (cpu.cpp; cuda.cu must provide the same) -------------------------------------------
//   forward(sigma_x (N), sigma_y (N), rho (N), coords (N,2), colours (N,3), H, W, dmax) -> image (3, H, W)
//   backward(same five, grad_image (3, H, W) contiguous, H, W, dmax)
//       -> [grad_sigma_x, grad_sigma_y, grad_rho, grad_coords, grad_colours]
// Inputs are contiguous and share one dtype (float32; float64 also on CPU). Gradients are the exact
// derivatives of the rendered value over the pixels inside the box (the box edges are not differentiated),
// as in gs.cu's backward.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define RASTER_HD __host__ __device__ __forceinline__
#else
#define RASTER_HD inline
#endif

namespace asr_raster {

template <typename T>
struct ZeroPower;  // -power beyond which exp(power) is exactly 0 in T, rounded up
template <>
struct ZeroPower<float> {
  static constexpr double value = 104.0;
};
template <>
struct ZeroPower<double> {
  static constexpr double value = 746.0;
};

constexpr double kCutMargin = 1.02;         // relative slack on the cut (see above: error < 1e-4)
constexpr double kMinOneMinusAbsRho = 1e-2;  // below this the ellipse cut is not trusted: dmax box only

template <typename T>
struct Gaussian {
  T x, y, dmax;                                  // centre and box half-width, NDC
  T inv_a2, inv_b2, two_rho_ab, neg_half_inv;    // gs.cu's constants
  double a, b, rho, one_minus_rho2, cut2;        // for the ellipse cut; cut2 = 2 C
  bool ellipse;                                  // cut by the ellipse as well as the box
  int row0, row1, col0, col1;                    // inclusive pixel bbox; row0 > row1 when empty
};

// NDC of pixel i among n, as gs.cu computes it (double, then stored in T).
template <typename T>
RASTER_HD T pixel_ndc(int i, int n) {
  return static_cast<T>((2.0 * i) / (n - 1) - 1.0);
}

// Pixels whose NDC may fall in [lo, hi], with one pixel of slack on each side, clamped to [0, n-1].
RASTER_HD void pixel_range(double lo, double hi, int n, int* first, int* last) {
  if (!(lo <= hi)) {  // also catches NaN
    *first = 1;
    *last = 0;
    return;
  }
  double f = floor((lo + 1.0) * (n - 1) * 0.5) - 1.0;
  double l = ceil((hi + 1.0) * (n - 1) * 0.5) + 1.0;
  f = f < 0.0 ? 0.0 : f;
  l = l > n - 1.0 ? n - 1.0 : l;
  *first = f > n ? n : static_cast<int>(f);
  *last = l < -1.0 ? -1 : static_cast<int>(l);
}

template <typename T>
RASTER_HD Gaussian<T> make_gaussian(T sigma_x, T sigma_y, T rho, T x, T y, double dmax, int height, int width) {
  Gaussian<T> g;
  g.x = x;
  g.y = y;
  g.dmax = static_cast<T>(dmax);
  // gs.cu: float nh = -0.5 / (1-rho*rho); float a2 = 1.0 / sx / sx; float ab = 2*rho / sx / sy;
  T one_minus = T(1) - rho * rho;
  g.neg_half_inv = static_cast<T>(-0.5 / static_cast<double>(one_minus));
  g.inv_a2 = static_cast<T>(1.0 / static_cast<double>(sigma_x) / static_cast<double>(sigma_x));
  g.inv_b2 = static_cast<T>(1.0 / static_cast<double>(sigma_y) / static_cast<double>(sigma_y));
  g.two_rho_ab = T(2) * rho / sigma_x / sigma_y;

  g.a = sigma_x;
  g.b = sigma_y;
  g.rho = rho;
  g.one_minus_rho2 = 1.0 - g.rho * g.rho;
  g.cut2 = 2.0 * ZeroPower<T>::value * kCutMargin;
  g.ellipse = (1.0 - fabs(g.rho) >= kMinOneMinusAbsRho) && g.a > 0.0 && g.b > 0.0;
  double box = static_cast<double>(g.dmax);
  double reach_x = box, reach_y = box;
  if (g.ellipse) {
    double root = sqrt(g.cut2);
    reach_x = fmin(box, g.a * root);
    reach_y = fmin(box, g.b * root);
  }
  pixel_range(static_cast<double>(x) - reach_x, static_cast<double>(x) + reach_x, width, &g.col0, &g.col1);
  pixel_range(static_cast<double>(y) - reach_y, static_cast<double>(y) + reach_y, height, &g.row0, &g.row1);
  if (g.col0 > g.col1) {
    g.row0 = 1;
    g.row1 = 0;
  }
  return g;
}

template <typename T>
RASTER_HD bool is_empty(const Gaussian<T>& g) {
  return g.row0 > g.row1 || g.col0 > g.col1;
}

// The columns [*c0, *c1] of a row (at offset dy = Y_h - y) where the Gaussian can be non-zero; false if none.
// The exact box test on dy is made here; the per-pixel box test on dx is the caller's.
template <typename T>
RASTER_HD bool row_columns(const Gaussian<T>& g, T dy, int width, int* c0, int* c1) {
  if (dy > g.dmax || dy < -g.dmax) return false;
  *c0 = g.col0;
  *c1 = g.col1;
  if (g.ellipse) {
    double v = static_cast<double>(dy) / g.b;
    double rest = g.cut2 - v * v;
    if (rest < 0.0) return false;
    double half = sqrt(rest * g.one_minus_rho2);
    int f, l;
    pixel_range(g.x + g.a * (g.rho * v - half), g.x + g.a * (g.rho * v + half), width, &f, &l);
    *c0 = f > *c0 ? f : *c0;
    *c1 = l < *c1 ? l : *c1;
  }
  return *c0 <= *c1;
}

// The power of the Gaussian at (dx, dy), in gs.cu's operation order. `row_term` = (inv_b2*dy)*dy.
template <typename T>
RASTER_HD T power_at(const Gaussian<T>& g, T dx, T dy, T row_term) {
  return ((g.inv_a2 * dx) * dx - (g.two_rho_ab * dx) * dy + row_term) * g.neg_half_inv;
}

struct TileGrid {
  int tile_h, tile_w, tiles_y, tiles_x;
};

RASTER_HD TileGrid make_grid(int height, int width, int tile_h, int tile_w) {
  return TileGrid{tile_h, tile_w, (height + tile_h - 1) / tile_h, (width + tile_w - 1) / tile_w};
}

// Tiles [*ty0, *ty1] x [*tx0, *tx1] covered by the Gaussian's bbox; returns how many (0 when empty).
template <typename T>
RASTER_HD int tile_range(const Gaussian<T>& g, const TileGrid& grid, int* ty0, int* ty1, int* tx0, int* tx1) {
  if (is_empty(g)) return 0;
  *ty0 = g.row0 / grid.tile_h;
  *ty1 = g.row1 / grid.tile_h;
  *tx0 = g.col0 / grid.tile_w;
  *tx1 = g.col1 / grid.tile_w;
  return (*ty1 - *ty0 + 1) * (*tx1 - *tx0 + 1);
}

// Gradients of Gaussian i from the sums its backward accumulates over its pixels: the colour sums s_* and the
// moments m_* of v*G in dx, dy (G = sum_c grad_c * colour_c). d value / d param = value * 2 w1 * (...) with
// w1 = -1/(2(1-rho^2)), w2 = 1/a^2, w3 = 1/(ab), w4 = 1/b^2 (docs/methods/gsasr.md §4.4), linear in the moments.
// One function for both backends, so the C++ and CUDA gradients can't drift apart.
template <typename T>
RASTER_HD void write_gradients(const Gaussian<T>& g, double a, double b, double r, double s_r, double s_g,
                               double s_b, double m_x, double m_y, double m_xx, double m_xy, double m_yy,
                               long long i, T* g_sx, T* g_sy, T* g_rho, T* g_coords, T* g_colours) {
  const double two_w1 = 2.0 * static_cast<double>(g.neg_half_inv);
  const double w2 = 1.0 / (a * a), w3 = 1.0 / (a * b), w4 = 1.0 / (b * b);
  const double sum_d = w2 * m_xx - 2.0 * r * w3 * m_xy + w4 * m_yy;
  g_colours[3 * i] = static_cast<T>(s_r);
  g_colours[3 * i + 1] = static_cast<T>(s_g);
  g_colours[3 * i + 2] = static_cast<T>(s_b);
  g_coords[2 * i] = static_cast<T>(two_w1 * (-w2 * m_x + r * w3 * m_y));
  g_coords[2 * i + 1] = static_cast<T>(two_w1 * (-w4 * m_y + r * w3 * m_x));
  g_sx[i] = static_cast<T>(two_w1 / a * (r * w3 * m_xy - w2 * m_xx));
  g_sy[i] = static_cast<T>(two_w1 / b * (r * w3 * m_xy - w4 * m_yy));
  g_rho[i] = static_cast<T>(-two_w1 * (two_w1 * r * sum_d + w3 * m_xy));
}

}  // namespace asr_raster
