// inrforge's fused CPU fitting step (built and loaded by inrforge/native.py).
//
// For each of B INRs (an MLP with widths d_0 .. d_L, hidden activation sin(w0 z) or relu(z), a linear
// last layer plus an output offset) it computes, as inrforge.fit.backprop does,
//
//     mse   = mean over points and outputs of (f(x) - y)^2
//     grad  = d mse / d (W_i, b_i)      (zero for an INR that is not active)
//
// in one pass per INR that never leaves the CPU's caches: the points are taken in chunks of a few
// hundred, and for each chunk the forward pass stores sin(w0 z) and its derivative w0 cos(w0 z)
// (one shared range reduction for both, see sincos_v), the residual is formed, and the backward
// pass adds the chunk's share of dW_i = g_i^T h_i and db_i = sum g_i before moving on.  Every
// elementwise operation is fused into the epilogue of the product that feeds it.
//
// Layout: activations are stored transposed, [feature][point], so that one vector register holds
// one feature of V consecutive points; products broadcast a weight and multiply a whole vector.
// Parameters and gradients live in inrforge's layer-major buffer (fit.stacked_views): slot s of INR
// b at B * offset_s + b * size_s.
//
// Each INR is computed by one thread, in a fixed order, so its result does not depend on the
// batch it is in nor on the number of threads (tested); it does depend on the CPU's vector width.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <vector>

// Vector width and register blocking: 16 lanes and 8 x 2 accumulators with AVX-512's 32 registers,
// else 8 lanes and 4 x 2 (AVX2's 16).  FUSED_STEP_WIDE forces the former on any CPU (the compiler
// then splits each vector in two), so that its code paths are tested where AVX-512 is absent.
#if defined(__AVX512F__) || defined(FUSED_STEP_WIDE)
constexpr int V = 16, OB_MM = 8, OB_OUT = 4, KB_OUT = 4;
#else
constexpr int V = 8, OB_MM = 4, OB_OUT = 4, KB_OUT = 2;
#endif
typedef float vf __attribute__((vector_size(4 * V)));
typedef int32_t vi __attribute__((vector_size(4 * V)));

static inline vf splat(float x) { return vf{} + x; }
// The sum of a vector's lanes by halving (a fixed order: the same bits on every call).
static inline float hsum(vf v) {
  alignas(sizeof(vf)) float t[V];
  *(vf *)t = v;
  for (int w = V / 2; w > 0; w /= 2)
    for (int i = 0; i < w; i++) t[i] += t[i + w];
  return t[0];
}

// (sin u, cos u) from one range reduction, the polynomial inrforge.fit.sincos computes with torch ops:
// u = k pi/2 + r, k = round(2u / pi) (the 1.5 * 2^23 trick rounds to nearest even), |r| <= pi/4, sin r
// and cos r by Cephes' minimax polynomials, and the quadrant k mod 4 swaps and negates them.
// Absolute error about 1e-7 for |u| < 1e4; a NaN or infinite u gives NaN.
static inline void sincos_v(vf u, vf &so, vf &co) {
  const vf magic = splat(12582912.0f);
  vf k = (u * splat(0.636619772367581343f) + magic) - magic;
  vf r = ((u - k * splat(1.5703125f)) - k * splat(4.837512969970703125e-4f)) - k * splat(7.54978995489188216e-8f);
  vf r2 = r * r;
  vf s = r + r * r2 * (splat(-1.6666654611e-1f) + r2 * (splat(8.3321608736e-3f) + r2 * splat(-1.9515295891e-4f)));
  vf c = splat(1.0f) - splat(0.5f) * r2 + r2 * r2 * (splat(4.166664568298827e-2f) + r2 * (splat(-1.388731625493765e-3f) + r2 * splat(2.443315711809948e-5f)));
  vi q = __builtin_convertvector(k, vi) & 3;
  vi odd = (q & 1) != 0;
  vf sn = odd ? c : s;
  vf cs = odd ? s : c;
  vi ss = (q & 2) << 30;
  vi cc = ((q + 1) & 2) << 30;
  so = (vf)((vi)sn ^ ss);
  co = (vf)((vi)cs ^ cc);
}

// Y[o][p] = sum_k A[o*K+k] X[k][p] for p < Np (a multiple of 2V), handed to epi(o, p, vector of V points)
// instead of being stored: OB rows and 2V points at a time, their 2 * OB accumulators in registers.
template <int OB, class Epi>
static inline void mm_rows(const float *A, int K, int o0, const float *X, int Np, Epi &epi) {
  for (int p = 0; p < Np; p += 2 * V) {
    vf a0[OB], a1[OB];
    for (int j = 0; j < OB; j++) { a0[j] = vf{}; a1[j] = vf{}; }
    for (int k = 0; k < K; k++) {
      vf x0 = *(const vf *)(X + (size_t)k * Np + p);
      vf x1 = *(const vf *)(X + (size_t)k * Np + p + V);
      for (int j = 0; j < OB; j++) {
        float w = A[(o0 + j) * K + k];
        a0[j] += w * x0;
        a1[j] += w * x1;
      }
    }
    for (int j = 0; j < OB; j++) { epi(o0 + j, p, a0[j]); epi(o0 + j, p + V, a1[j]); }
  }
}
template <class Epi>
static inline void mm(const float *A, int O, int K, const float *X, int Np, Epi epi) {
  int o = 0;
  for (; o + OB_MM <= O; o += OB_MM) mm_rows<OB_MM>(A, K, o, X, Np, epi);
  if (OB_MM > 4) for (; o + 4 <= O; o += 4) mm_rows<4>(A, K, o, X, Np, epi);
  for (; o < O; o++) mm_rows<1>(A, K, o, X, Np, epi);
}

// D[o*K+k] += sum_p G[o][p] H[k][p] (a weight gradient), OB x KB entries at a time, each summed in
// V lanes and then across them.
template <int OB, int KB>
static inline void outer_block(const float *G, const float *H, int Np, int o0, int k0, int K, float *D) {
  vf acc[OB][KB];
  for (int j = 0; j < OB; j++) for (int l = 0; l < KB; l++) acc[j][l] = vf{};
  for (int p = 0; p < Np; p += V) {
    vf g[OB], h[KB];
    for (int j = 0; j < OB; j++) g[j] = *(const vf *)(G + (size_t)(o0 + j) * Np + p);
    for (int l = 0; l < KB; l++) h[l] = *(const vf *)(H + (size_t)(k0 + l) * Np + p);
    for (int j = 0; j < OB; j++) for (int l = 0; l < KB; l++) acc[j][l] += g[j] * h[l];
  }
  for (int j = 0; j < OB; j++) for (int l = 0; l < KB; l++) D[(o0 + j) * K + k0 + l] += hsum(acc[j][l]);
}
template <int OB>
static inline void outer_rows(const float *G, const float *H, int Np, int o0, int K, float *D) {
  int k = 0;
  for (; k + KB_OUT <= K; k += KB_OUT) outer_block<OB, KB_OUT>(G, H, Np, o0, k, K, D);
  for (; k < K; k++) outer_block<OB, 1>(G, H, Np, o0, k, K, D);
}
static void outer(const float *G, const float *H, int Np, int O, int K, float *D) {
  int o = 0;
  for (; o + OB_OUT <= O; o += OB_OUT) outer_rows<OB_OUT>(G, H, Np, o, K, D);
  for (; o < O; o++) outer_rows<1>(G, H, Np, o, K, D);
}

static float *alloc(size_t n) { return (float *)aligned_alloc(64, ((n * 4 + 63) / 64) * 64); }


// The fitting step of B INRs (see inrforge/fit.py: backprop).  Points are processed in chunks of
// CHUNK so that one INR's activations stay in cache; gradients and squared errors add up over the
// chunks in a fixed order.  Returns 0, or 1 when memory for the workspace could not be had.
extern "C" int fused_step(int B, int L, const int *widths, const int64_t *offsets, const float *flat, float *grad,
                          const float *coords, int coords_per_inr, const float *targets, int N, const uint8_t *active,
                          float *mse, float w0, float out_offset, int siren, int nthreads, int chunk) {
  // equal chunks of at most `chunk` points (rounded up to 2V): the last one is not mostly padding
  const int n_chunks = (N + chunk - 1) / chunk, per_chunk = (N + n_chunks - 1) / n_chunks;
  const int C = (per_chunk + 2 * V - 1) / (2 * V) * (2 * V);
  int wmax = 0;
  for (int i = 0; i <= L; i++) wmax = std::max(wmax, widths[i]);
  const int d0 = widths[0], dout = widths[L];
  const float inv_n = 1.0f / ((float)N * dout);
  int status = 0;
#pragma omp parallel num_threads(nthreads)
  {
    static thread_local float *ws = nullptr;
    static thread_local size_t ws_size = 0;
    size_t need = 0;
    for (int i = 0; i < L; i++) need += ((size_t)widths[i] * C + 15) / 16 * 16;
    for (int i = 0; i + 1 < L; i++) need += ((size_t)widths[i + 1] * C + 15) / 16 * 16;
    need += 2 * (size_t)wmax * C + (size_t)dout * C + ((size_t)wmax * wmax + 15) / 16 * 16 + 64;
    if (need > ws_size) {
      free(ws);
      ws = alloc(need);
      ws_size = ws ? need : 0;
    }
    std::vector<float *> H(L), Dv(L);
    std::vector<const float *> P(L), Bi(L);
    std::vector<float *> gP(L), gB(L);
    float *G0 = nullptr, *G1 = nullptr, *T = nullptr, *WT = nullptr;
    if (!ws) {
#pragma omp atomic write
      status = 1;
    } else {
      float *cur = ws;
      auto take = [&](size_t n) { float *r = cur; cur += (n + 15) / 16 * 16; return r; };
      for (int i = 0; i < L; i++) H[i] = take((size_t)widths[i] * C);
      for (int i = 0; i + 1 < L; i++) Dv[i] = take((size_t)widths[i + 1] * C);
      G0 = take((size_t)wmax * C); G1 = take((size_t)wmax * C); T = take((size_t)dout * C);
      WT = take((size_t)wmax * wmax);
      memset(H[0], 0, sizeof(float) * d0 * C);
      memset(T, 0, sizeof(float) * dout * C);
    }
#pragma omp for schedule(static)
    for (int b = 0; b < B; b++) {
      if (!ws) continue;
      for (int i = 0; i < L; i++) {
        int64_t sw = (int64_t)widths[i + 1] * widths[i], sb = widths[i + 1];
        P[i] = flat + B * offsets[2 * i] + b * sw;
        Bi[i] = flat + B * offsets[2 * i + 1] + b * sb;
        gP[i] = grad + B * offsets[2 * i] + b * sw;
        gB[i] = grad + B * offsets[2 * i + 1] + b * sb;
        memset(gP[i], 0, sizeof(float) * sw);
        memset(gB[i], 0, sizeof(float) * sb);
      }
      const float *x = coords + (coords_per_inr ? (size_t)b * N * d0 : 0);
      const float *t = targets + (size_t)b * N * dout;
      const float scale = active[b] ? 2.0f * inv_n : 0.0f;
      vi lane;
      for (int l = 0; l < V; l++) lane[l] = l;
      vf sq = vf{};
      for (int p0 = 0; p0 < N; p0 += C) {
        const int n = std::min(C, N - p0);
        for (int j = 0; j < n; j++) for (int k = 0; k < d0; k++) H[0][(size_t)k * C + j] = x[(size_t)(p0 + j) * d0 + k];
        for (int j = 0; j < n; j++) for (int k = 0; k < dout; k++) T[(size_t)k * C + j] = t[(size_t)(p0 + j) * dout + k];
        for (int i = 0; i + 1 < L; i++) {
          float *Hn = H[i + 1], *D = Dv[i];
          const float *bias = Bi[i];
          if (siren) {
            const vf w0v = splat(w0);
            mm(P[i], widths[i + 1], widths[i], H[i], C, [&](int o, int p, vf z) {
              vf s, c;
              sincos_v(w0v * (z + bias[o]), s, c);
              *(vf *)(Hn + (size_t)o * C + p) = s;
              *(vf *)(D + (size_t)o * C + p) = w0v * c;
            });
          } else {
            mm(P[i], widths[i + 1], widths[i], H[i], C, [&](int o, int p, vf z) {
              z += bias[o];
              vi pos = z > 0;
              *(vf *)(Hn + (size_t)o * C + p) = pos ? z : vf{};
              *(vf *)(D + (size_t)o * C + p) = pos ? splat(1.0f) : vf{};
            });
          }
        }
        const float *bias = Bi[L - 1];
        mm(P[L - 1], dout, widths[L - 1], H[L - 1], C, [&](int o, int p, vf z) {
          vf r = z + (bias[o] + out_offset) - *(const vf *)(T + (size_t)o * C + p);
          vi valid = (lane + p) < n;
          r = valid ? r : vf{};
          sq += r * r;
          *(vf *)(G0 + (size_t)o * C + p) = r * scale;
        });
        float *g = G0, *gn = G1;
        for (int i = L - 1; i >= 0; i--) {
          int O = widths[i + 1], K = widths[i];
          outer(g, H[i], C, O, K, gP[i]);
          for (int o = 0; o < O; o++) {
            vf s = vf{};
            for (int p = 0; p < C; p += V) s += *(const vf *)(g + (size_t)o * C + p);
            gB[i][o] += hsum(s);
          }
          if (i > 0) {
            const float *W = P[i];
            for (int o = 0; o < O; o++) for (int k = 0; k < K; k++) WT[k * O + o] = W[o * K + k];
            const float *D = Dv[i - 1];
            float *dst = gn;
            mm(WT, K, O, g, C, [&](int k, int p, vf v) {
              *(vf *)(dst + (size_t)k * C + p) = v * *(const vf *)(D + (size_t)k * C + p);
            });
            std::swap(g, gn);
          }
        }
      }
      mse[b] = hsum(sq) * inv_n;
    }
  }
  return status;
}
