// Gaussian rasterizer, CUDA backend (forward + backward). Maths, exact cut-offs, binning and ABI: binning.h;
// design and exactness argument: docs/kernels.md.
//
// Forward (tile-binned, no atomics, deterministic):
//   1. setup     one thread per Gaussian: binning.h's make_gaussian (box ∩ exact ellipse bbox), the kernel
//                constants without FMA contraction, and the number of 16x16 tiles its bbox touches;
//   2. bin       exclusive scan of the counts, then each Gaussian writes its (tile, gaussian) pairs in index
//                order; a stable sort by tile keeps ascending Gaussian index inside every tile;
//   3. ranges    first/last pair of each tile;
//   4. render    one 16x16 block per tile, one thread per pixel; the tile's Gaussians are staged through shared
//                memory 256 at a time and summed in ascending index order in registers; every pixel of the
//                image is written exactly once (zero when no Gaussian reaches it).
// Backward (Gaussian-parallel, no atomics, deterministic): one warp per Gaussian walks the pixels of its own
//   bbox row by row (row_columns: the same exact cut as the forward), the lanes striding over a row's columns,
//   and accumulates the colour sums and the moments of v*G in double; a fixed shuffle tree reduces the warp and
//   lane 0 writes the five gradients (the formulas of cpu.cpp / docs/methods/gsasr.md §4.4). Every Gaussian owns its
//   gradient, so neither atomics nor per-tile partial buffers are needed.
// Arithmetic: the power is evaluated in gs.cu's order with explicitly rounded operations (__fmul_rn & co., so
// nvcc cannot contract it into FMAs) and exp is the full-precision expf/exp, as the reference; float32 and
// float64 (for gradcheck).
#include <torch/extension.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "binning.h"

// Device guard, current stream, launch check (c10 or a fallback for CPU-only torch builds): see the header.
#include "common/cuda_compat.h"

namespace {

using asr_raster::Gaussian;

constexpr int kTile = 16;                     // tiles of 16 x 16 pixels, one thread per pixel
constexpr int kTileThreads = kTile * kTile;   // also the shared-memory batch of Gaussians
constexpr int kThreads = 256;                 // 1-D kernels
constexpr int kWarp = 32;

// Explicitly rounded arithmetic: what the reference (and cpu.cpp, built with -ffp-contract=off) computes.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float exp_of(float x) { return expf(x); }  // full-range expf, not __expf
__device__ __forceinline__ double exp_of(double x) { return exp(x); }

// What a tile needs of one Gaussian (staged through shared memory).
template <typename T>
struct Splat {
  T x, y, inv_a2, two_rho_ab, inv_b2, neg_half_inv, r, g, b;
};

// binning.h's make_gaussian, with the float constants recomputed so that nvcc cannot contract `1 - rho*rho`
// into an FMA (gs.cu's / the reference's rounding). The bbox arithmetic is in double with a pixel of slack.
template <typename T>
__device__ Gaussian<T> gaussian_at(const T* sx, const T* sy, const T* rho, const T* coords, int64_t i, double dmax,
                                   int height, int width) {
  const T a = sx[i], b = sy[i], r = rho[i];
  Gaussian<T> g = asr_raster::make_gaussian<T>(a, b, r, coords[2 * i], coords[2 * i + 1], dmax, height, width);
  const T one_minus = sub_rn(T(1), mul_rn(r, r));
  g.neg_half_inv = static_cast<T>(-0.5 / static_cast<double>(one_minus));
  g.two_rho_ab = (T(2) * r) / a / b;  // 2*r is exact; IEEE divisions
  return g;
}

// gs.cu's power: ((inv_a2*dx)*dx - (two_rho_ab*dx)*dy + row_term) * neg_half_inv, row_term = (inv_b2*dy)*dy.
template <typename T>
__device__ __forceinline__ T power_of(T inv_a2, T two_rho_ab, T neg_half_inv, T dx, T dy, T row_term) {
  T v = mul_rn(mul_rn(inv_a2, dx), dx);
  v = sub_rn(v, mul_rn(mul_rn(two_rho_ab, dx), dy));
  v = add_rn(v, row_term);
  return mul_rn(v, neg_half_inv);
}

template <typename T>
__global__ void axis_kernel(T* axis, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) axis[i] = asr_raster::pixel_ndc<T>(i, n);
}

// ------------------------------------------------------------------------------------------------ forward

template <typename T>
__global__ void __launch_bounds__(kThreads)
setup_kernel(const T* __restrict__ sx, const T* __restrict__ sy, const T* __restrict__ rho,
             const T* __restrict__ coords, const T* __restrict__ colours, int64_t n, int height, int width,
             double dmax, asr_raster::TileGrid grid, Splat<T>* __restrict__ splats, int4* __restrict__ rects,
             int64_t* __restrict__ counts) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const Gaussian<T> g = gaussian_at(sx, sy, rho, coords, i, dmax, height, width);
  splats[i] = Splat<T>{g.x,        g.y,           g.inv_a2,          g.two_rho_ab, g.inv_b2,
                       g.neg_half_inv, colours[3 * i], colours[3 * i + 1], colours[3 * i + 2]};
  int ty0 = 1, ty1 = 0, tx0 = 1, tx1 = 0;
  const int tiles = asr_raster::tile_range(g, grid, &ty0, &ty1, &tx0, &tx1);
  rects[i] = tiles > 0 ? make_int4(ty0, ty1, tx0, tx1) : make_int4(1, 0, 1, 0);
  counts[i] = tiles;
}

// Each Gaussian writes its pairs at its own offset, tiles in row-major order: pairs come out in index order.
__global__ void __launch_bounds__(kThreads)
fill_kernel(const int4* __restrict__ rects, const int64_t* __restrict__ ends, const int64_t* __restrict__ counts,
            int64_t n, int tiles_x, int32_t* __restrict__ keys, int32_t* __restrict__ ids) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int4 r = rects[i];
  int64_t pos = ends[i] - counts[i];
  for (int ty = r.x; ty <= r.y; ++ty) {
    for (int tx = r.z; tx <= r.w; ++tx) {
      keys[pos] = ty * tiles_x + tx;
      ids[pos] = static_cast<int32_t>(i);
      ++pos;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
ranges_kernel(const int32_t* __restrict__ sorted_keys, int64_t total, int64_t* __restrict__ tile_begin,
              int64_t* __restrict__ tile_end) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= total) return;
  const int32_t key = sorted_keys[k];
  if (k == 0 || sorted_keys[k - 1] != key) tile_begin[key] = k;
  if (k == total - 1 || sorted_keys[k + 1] != key) tile_end[key] = k + 1;
}

template <typename T>
__global__ void __launch_bounds__(kTileThreads)
render_kernel(const Splat<T>* __restrict__ splats, const int32_t* __restrict__ ids,
              const int64_t* __restrict__ tile_begin, const int64_t* __restrict__ tile_end,
              const T* __restrict__ xs, const T* __restrict__ ys, int height, int width, T limit,
              T* __restrict__ out) {
  __shared__ Splat<T> batch[kTileThreads];
  const int tile = blockIdx.y * gridDim.x + blockIdx.x;
  const int px = blockIdx.x * kTile + threadIdx.x, py = blockIdx.y * kTile + threadIdx.y;
  const int t = threadIdx.y * kTile + threadIdx.x;
  const bool inside = px < width && py < height;
  const T X = inside ? xs[px] : T(0), Y = inside ? ys[py] : T(0);
  T red = 0, green = 0, blue = 0;
  const int64_t begin = tile_begin[tile], end = tile_end[tile];
  for (int64_t base = begin; base < end; base += kTileThreads) {
    const int count = static_cast<int>(end - base < kTileThreads ? end - base : kTileThreads);
    __syncthreads();  // the previous batch has been read by every thread
    if (t < count) batch[t] = splats[ids[base + t]];
    __syncthreads();
    if (!inside) continue;
    for (int k = 0; k < count; ++k) {
      const Splat<T>& s = batch[k];
      const T dx = X - s.x, dy = Y - s.y;
      if (dx <= limit && dx >= -limit && dy <= limit && dy >= -limit) {
        const T row_term = mul_rn(mul_rn(s.inv_b2, dy), dy);
        const T v = exp_of(power_of(s.inv_a2, s.two_rho_ab, s.neg_half_inv, dx, dy, row_term));
        red = add_rn(red, mul_rn(v, s.r));
        green = add_rn(green, mul_rn(v, s.g));
        blue = add_rn(blue, mul_rn(v, s.b));
      }
    }
  }
  if (inside) {
    const int64_t plane = static_cast<int64_t>(height) * width, at = static_cast<int64_t>(py) * width + px;
    out[at] = red;
    out[plane + at] = green;
    out[2 * plane + at] = blue;
  }
}

// ----------------------------------------------------------------------------------------------- backward

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
backward_kernel(const T* __restrict__ sx, const T* __restrict__ sy, const T* __restrict__ rho,
                const T* __restrict__ coords, const T* __restrict__ colours, const T* __restrict__ grad,
                const T* __restrict__ xs, const T* __restrict__ ys, int64_t n, int height, int width, double dmax,
                T* __restrict__ g_sx, T* __restrict__ g_sy, T* __restrict__ g_rho, T* __restrict__ g_coords,
                T* __restrict__ g_colours) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (i >= n) return;  // uniform across the warp
  const Gaussian<T> g = gaussian_at(sx, sy, rho, coords, i, dmax, height, width);
  const T cr = colours[3 * i], cg = colours[3 * i + 1], cb = colours[3 * i + 2];
  const int64_t plane = static_cast<int64_t>(height) * width;
  double s_r = 0, s_g = 0, s_b = 0, m_x = 0, m_y = 0, m_xx = 0, m_xy = 0, m_yy = 0;
  if (!asr_raster::is_empty(g)) {
    for (int h = g.row0; h <= g.row1; ++h) {
      const T dy = ys[h] - g.y;
      int c0, c1;
      if (!asr_raster::row_columns(g, dy, width, &c0, &c1)) continue;
      const T row_term = mul_rn(mul_rn(g.inv_b2, dy), dy);
      const double dyd = dy;
      const T* gr = grad + static_cast<int64_t>(h) * width;
      for (int w = c0 + lane; w <= c1; w += kWarp) {
        const T dx = xs[w] - g.x;
        if (!(dx <= g.dmax && dx >= -g.dmax)) continue;
        const T v = exp_of(power_of(g.inv_a2, g.two_rho_ab, g.neg_half_inv, dx, dy, row_term));
        const T r = gr[w], gg = gr[plane + w], gb = gr[2 * plane + w];
        s_r += static_cast<double>(mul_rn(v, r));
        s_g += static_cast<double>(mul_rn(v, gg));
        s_b += static_cast<double>(mul_rn(v, gb));
        const T weight = add_rn(add_rn(mul_rn(r, cr), mul_rn(gg, cg)), mul_rn(gb, cb));
        const double vg = static_cast<double>(mul_rn(v, weight));
        const double dxd = dx;
        m_x += vg * dxd;
        m_y += vg * dyd;
        m_xx += vg * dxd * dxd;
        m_xy += vg * dxd * dyd;
        m_yy += vg * dyd * dyd;
      }
    }
  }
  s_r = warp_sum(s_r);
  s_g = warp_sum(s_g);
  s_b = warp_sum(s_b);
  m_x = warp_sum(m_x);
  m_y = warp_sum(m_y);
  m_xx = warp_sum(m_xx);
  m_xy = warp_sum(m_xy);
  m_yy = warp_sum(m_yy);
  if (lane != 0) return;
  asr_raster::write_gradients(g, sx[i], sy[i], rho[i], s_r, s_g, s_b, m_x, m_y, m_xx, m_xy, m_yy, i, g_sx, g_sy,
                              g_rho, g_coords, g_colours);
}

// ------------------------------------------------------------------------------------------------- host

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

void check_inputs(const std::vector<torch::Tensor>& tensors, int64_t n) {
  for (const auto& t : tensors) {
    TORCH_CHECK(t.is_cuda(), "rasterize cuda backend: tensors must be on a CUDA device");
    TORCH_CHECK(t.is_contiguous(), "rasterize cuda backend: tensors must be contiguous");
    TORCH_CHECK(t.scalar_type() == tensors[0].scalar_type(), "rasterize cuda backend: mixed dtypes");
    TORCH_CHECK(t.device() == tensors[0].device(), "rasterize cuda backend: tensors on different devices");
    TORCH_CHECK(t.size(0) == n, "rasterize cuda backend: inputs disagree on the number of Gaussians");
  }
  TORCH_CHECK(tensors[0].scalar_type() == torch::kFloat || tensors[0].scalar_type() == torch::kDouble,
              "rasterize cuda backend: float32 or float64 only");
  TORCH_CHECK(n < (int64_t(1) << 31), "rasterize cuda backend: at most 2^31 - 1 Gaussians per call");
}

template <typename T>
torch::Tensor pixel_axis(int n, const torch::TensorOptions& options, cudaStream_t stream) {
  auto axis = torch::empty({n}, options);
  axis_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(axis.data_ptr<T>(), n);
  check_launch();
  return axis;
}

template <typename T>
void forward_impl(const std::vector<torch::Tensor>& in, int64_t n, int height, int width, double dmax,
                  torch::Tensor& out) {
  const auto stream = current_stream();
  const auto options = in[0].options();
  const auto grid = asr_raster::make_grid(height, width, kTile, kTile);
  const int64_t n_tiles = static_cast<int64_t>(grid.tiles_x) * grid.tiles_y;
  const torch::Tensor xs = pixel_axis<T>(width, options, stream);
  const torch::Tensor ys = pixel_axis<T>(height, options, stream);
  auto tile_begin = torch::zeros({n_tiles}, options.dtype(torch::kLong));
  auto tile_end = torch::zeros({n_tiles}, options.dtype(torch::kLong));
  auto splats = torch::empty({std::max<int64_t>(n, 1) * static_cast<int64_t>(sizeof(Splat<T>))},
                             options.dtype(torch::kByte));
  auto ids = torch::empty({0}, options.dtype(torch::kInt));
  if (n > 0) {
    auto rects = torch::empty({n, 4}, options.dtype(torch::kInt));
    auto counts = torch::empty({n}, options.dtype(torch::kLong));
    setup_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
        in[0].data_ptr<T>(), in[1].data_ptr<T>(), in[2].data_ptr<T>(), in[3].data_ptr<T>(), in[4].data_ptr<T>(), n,
        height, width, dmax, grid, reinterpret_cast<Splat<T>*>(splats.data_ptr<uint8_t>()),
        reinterpret_cast<int4*>(rects.data_ptr<int32_t>()), counts.data_ptr<int64_t>());
    check_launch();
    const auto ends = counts.cumsum(0);
    const int64_t total = ends[n - 1].item<int64_t>();
    if (total > 0) {
      auto keys = torch::empty({total}, options.dtype(torch::kInt));
      auto unsorted_ids = torch::empty({total}, options.dtype(torch::kInt));
      fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
          reinterpret_cast<const int4*>(rects.data_ptr<int32_t>()), ends.data_ptr<int64_t>(),
          counts.data_ptr<int64_t>(), n, grid.tiles_x, keys.data_ptr<int32_t>(), unsorted_ids.data_ptr<int32_t>());
      check_launch();
      // Stable: inside a tile the pairs keep their (ascending Gaussian index) order.
      const auto sorted = torch::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
      const auto sorted_keys = std::get<0>(sorted).contiguous();
      ids = unsorted_ids.index_select(0, std::get<1>(sorted)).contiguous();
      ranges_kernel<<<blocks_for(total), kThreads, 0, stream>>>(sorted_keys.data_ptr<int32_t>(), total,
                                                                 tile_begin.data_ptr<int64_t>(),
                                                                 tile_end.data_ptr<int64_t>());
      check_launch();
    }
  }
  const dim3 blocks(grid.tiles_x, grid.tiles_y), threads(kTile, kTile);
  render_kernel<T><<<blocks, threads, 0, stream>>>(
      reinterpret_cast<const Splat<T>*>(splats.data_ptr<uint8_t>()), ids.data_ptr<int32_t>(),
      tile_begin.data_ptr<int64_t>(), tile_end.data_ptr<int64_t>(), xs.data_ptr<T>(), ys.data_ptr<T>(), height,
      width, static_cast<T>(dmax), out.data_ptr<T>());
  check_launch();
}

torch::Tensor forward(torch::Tensor sx, torch::Tensor sy, torch::Tensor rho, torch::Tensor coords,
                      torch::Tensor colours, int64_t height, int64_t width, double dmax) {
  const int64_t n = colours.size(0);
  check_inputs({sx, sy, rho, coords, colours}, n);
  TORCH_CHECK(height >= 2 && width >= 2, "rasterize: output must be at least 2x2");
  TORCH_CHECK(height < 65535 * kTile && width < (int64_t(1) << 30), "rasterize cuda backend: output too large");
  const DeviceGuard guard(colours.device());
  // Not zeroed: the render kernel writes every pixel (the tests poison the memory to check that).
  auto out = torch::empty({3, height, width}, colours.options());
  AT_DISPATCH_FLOATING_TYPES(colours.scalar_type(), "rasterize_cuda_forward", [&] {
    forward_impl<scalar_t>({sx, sy, rho, coords, colours}, n, int(height), int(width), dmax, out);
  });
  return out;
}

std::vector<torch::Tensor> backward(torch::Tensor sx, torch::Tensor sy, torch::Tensor rho, torch::Tensor coords,
                                    torch::Tensor colours, torch::Tensor grad, int64_t height, int64_t width,
                                    double dmax) {
  const int64_t n = colours.size(0);
  check_inputs({sx, sy, rho, coords, colours}, n);
  TORCH_CHECK(grad.is_cuda() && grad.device() == colours.device() && grad.is_contiguous() &&
                  grad.scalar_type() == colours.scalar_type() && grad.dim() == 3 && grad.size(0) == 3 &&
                  grad.size(1) == height && grad.size(2) == width,
              "rasterize cuda backend: grad must be a contiguous (3, H, W) tensor of the inputs' dtype and device");
  const DeviceGuard guard(colours.device());
  auto g_sx = torch::empty_like(sx), g_sy = torch::empty_like(sy), g_rho = torch::empty_like(rho);
  auto g_coords = torch::empty_like(coords), g_colours = torch::empty_like(colours);
  if (n == 0) return {g_sx, g_sy, g_rho, g_coords, g_colours};
  const auto stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(colours.scalar_type(), "rasterize_cuda_backward", [&] {
    const auto xs = pixel_axis<scalar_t>(int(width), colours.options(), stream);
    const auto ys = pixel_axis<scalar_t>(int(height), colours.options(), stream);
    backward_kernel<scalar_t><<<blocks_for(n * kWarp), kThreads, 0, stream>>>(
        sx.data_ptr<scalar_t>(), sy.data_ptr<scalar_t>(), rho.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(),
        colours.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), xs.data_ptr<scalar_t>(), ys.data_ptr<scalar_t>(),
        n, int(height), int(width), dmax, g_sx.data_ptr<scalar_t>(), g_sy.data_ptr<scalar_t>(),
        g_rho.data_ptr<scalar_t>(), g_coords.data_ptr<scalar_t>(), g_colours.data_ptr<scalar_t>());
    check_launch();
  });
  return {g_sx, g_sy, g_rho, g_coords, g_colours};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "GSASR Gaussian rasterizer, CUDA backend (see csrc/rasterize/binning.h and docs/kernels.md)";
  m.def("forward", &forward, "render (3, H, W)");
  m.def("backward", &backward, "gradients w.r.t. sigma_x, sigma_y, rho, coords, colours");
}
