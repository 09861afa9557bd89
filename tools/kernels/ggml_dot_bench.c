// Times llama.cpp's own ggml-cpu vec_dot kernels the same way
// crates/kernels/benches/kernels.rs times Hearth's (thread CPU time, best of
// 7 samples, a ~1 MiB weight matrix, one activation row), so the two can be
// compared on the same machine. Run by hand:
//
//   gcc -O2 -o /tmp/ggml_dot_bench tools/kernels/ggml_dot_bench.c \
//       -I/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/include \
//       -L/work/llama/build/bin -lggml-cpu -lggml-base -Wl,-rpath,/work/llama/build/bin
//   /tmp/ggml_dot_bench [--big]
//
// Times the plain vec_dot path for every type, then llama.cpp's repacked
// gemv kernels for Q4_0 and Q4_K (8 rows interleaved, what llama.cpp runs
// for decode when it repacks weights at load) on filler data: their speed
// does not depend on the values.
#include "ggml.h"
#include "ggml-cpu.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static uint64_t rng_state = 42;
static float rnd(void) {
    rng_state += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static volatile float sink;

int main(int argc, char ** argv) {
    int big = argc > 1 && strcmp(argv[1], "--big") == 0;
    ggml_cpu_init();
    enum ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q4_1,
                              GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K,
                              GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_F32};
    int ns_[] = {896, 2048, 4864, 8192};
    printf("%-5s %5s | %9s %6s\n", "type", "n", "ggml ns", "GB/s");
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
        enum ggml_type ty = types[ti];
        const struct ggml_type_traits_cpu * tc = ggml_get_type_traits_cpu(ty);
        for (int ni = 0; ni < 4; ni++) {
            int n = ns_[ni];
            if (n % ggml_blck_size(ty)) continue;
            size_t rb = ggml_row_size(ty, n);
            size_t target = big ? (64u << 20) : (1u << 20);
            size_t rows = target / rb < 8 ? 8 : target / rb;
            uint8_t * w = malloc(rows * rb);
            float * x = malloc(sizeof(float) * n);
            size_t distinct = rows < 16 ? rows : 16;
            for (size_t r = 0; r < distinct; r++) {
                for (int i = 0; i < n; i++) x[i] = rnd() * 0.05f;
                ggml_quantize_chunk(ty, x, w + r * rb, 0, 1, n, NULL);
            }
            for (size_t r = distinct; r < rows; r++) memcpy(w + r * rb, w + (r % distinct) * rb, rb);
            size_t ab = ggml_row_size(tc->vec_dot_type, n);
            uint8_t * a = malloc(ab);
            for (int i = 0; i < n; i++) x[i] = rnd();
            ggml_get_type_traits_cpu(tc->vec_dot_type)->from_float(x, a, n);
            double best = 1e30;
            for (int s = 0; s < 7; s++) {
                double t0 = cpu_ns();
                long iters = 0;
                while (cpu_ns() - t0 < 30e6) {
                    for (size_t r = 0; r < rows; r++) {
                        float v;
                        tc->vec_dot(n, &v, 0, w + r * rb, 0, a, 0, 1);
                        sink = v;
                    }
                    iters++;
                }
                double per = (cpu_ns() - t0) / (iters * (double)rows);
                if (per < best) best = per;
            }
            printf("%-5s %5d | %9.1f %6.1f\n", ggml_type_name(ty), n, best, rb / best);
            free(w);
            free(x);
            free(a);
        }
    }
    printf("\nrepacked gemv (8 rows interleaved), ns per row:\n");
    void ggml_gemv_q4_0_8x8_q8_0(int, float *, size_t, const void *, const void *, int, int);
    void ggml_gemv_q4_K_8x8_q8_K(int, float *, size_t, const void *, const void *, int, int);
    struct { const char * name; enum ggml_type ty; void (*fn)(int, float *, size_t, const void *, const void *, int, int); } g[] = {
        {"q4_0", GGML_TYPE_Q4_0, ggml_gemv_q4_0_8x8_q8_0}, {"q4_K", GGML_TYPE_Q4_K, ggml_gemv_q4_K_8x8_q8_K}};
    for (int gi = 0; gi < 2; gi++) {
        for (int ni = 0; ni < 4; ni++) {
            int n = ns_[ni];
            if (n % ggml_blck_size(g[gi].ty)) continue;
            size_t rb = ggml_row_size(g[gi].ty, n);
            size_t target = big ? (64u << 20) : (1u << 20);
            size_t rows = (target / rb) / 8 * 8;
            if (rows < 8) rows = 8;
            uint8_t * w = malloc(rows * rb);
            memset(w, 0x11, rows * rb);
            const struct ggml_type_traits_cpu * tc = ggml_get_type_traits_cpu(g[gi].ty);
            size_t ab = ggml_row_size(tc->vec_dot_type, n);
            uint8_t * a = malloc(ab);
            float * x = malloc(sizeof(float) * n);
            for (int i = 0; i < n; i++) x[i] = rnd();
            ggml_get_type_traits_cpu(tc->vec_dot_type)->from_float(x, a, n);
            float * out = malloc(sizeof(float) * rows);
            double best = 1e30;
            for (int s = 0; s < 7; s++) {
                double t0 = cpu_ns();
                long iters = 0;
                while (cpu_ns() - t0 < 30e6) {
                    g[gi].fn(n, out, rows, w, a, 1, (int)rows);
                    sink = out[0];
                    iters++;
                }
                double per = (cpu_ns() - t0) / (iters * (double)rows);
                if (per < best) best = per;
            }
            printf("%-5s %5d | %9.1f %6.1f\n", g[gi].name, n, best, rb / best);
            free(w); free(a); free(x); free(out);
        }
    }
    return 0;
}
