// Dev-only differential oracle for tools/gen_reference.py: drives llama.cpp's libllama on a
// vocab-only GGUF. Not part of the build.
// usage: llama_oracle VOCAB tok   < cases separated by "\n__SEP__\n" -> per case 4 lines of ids, (add,parse) = 00 01 10 11
//        llama_oracle VOCAB detok < lines "remove_special unparse_special id id ..." -> hex of the detokenized bytes
//        llama_oracle VOCAB meta  -> vocab summary, then per token: id attr is_eog piece(special=0) piece(1) piece(1, lstrip=1)
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)l; (void)t; (void)u; }
static void hex(const char *s, int n) { for (int i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]); }
int main(int argc, char **argv) {
    if (argc < 3) return 1;
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *m = llama_model_load_from_file(argv[1], mp);
    if (!m) { fprintf(stderr, "load failed\n"); return 2; }
    const struct llama_vocab *v = llama_model_get_vocab(m);
    int n_vocab = llama_vocab_n_tokens(v);
    size_t cap = 1 << 20, len = 0; char *buf = malloc(cap);
    if (strcmp(argv[2], "meta") != 0) {
        size_t r; while ((r = fread(buf + len, 1, cap - len, stdin)) > 0) { len += r; if (len == cap) { cap *= 2; buf = realloc(buf, cap); } }
    }
    if (strcmp(argv[2], "tok") == 0) {
        const char *sep = "\n__SEP__\n"; size_t sl = strlen(sep);
        size_t pos = 0; int32_t *toks = malloc(sizeof(int32_t) * (len * 2 + 16));
        while (pos <= len) {
            char *next = NULL;
            for (size_t i = pos; i + sl <= len; i++) if (memcmp(buf + i, sep, sl) == 0) { next = buf + i; break; }
            size_t n = next ? (size_t)(next - (buf + pos)) : len - pos;
            for (int mode = 0; mode < 4; mode++) {
                int k = llama_tokenize(v, buf + pos, (int32_t)n, toks, (int32_t)(len * 2 + 16), mode >> 1, mode & 1);
                for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", toks[i]);
                printf("\n");
            }
            if (!next) break;
            pos = (size_t)(next - buf) + sl;
        }
    } else if (strcmp(argv[2], "detok") == 0) {
        char *save = NULL; char *line = strtok_r(buf, "\n", &save);
        int32_t *ids = malloc(sizeof(int32_t) * 100000); char *out = malloc(1 << 22);
        while (line) {
            int rs = 0, us = 0, n = 0, off = 0, c = 0;
            sscanf(line, "%d %d%n", &rs, &us, &off); line += off;
            while (sscanf(line, "%d%n", &ids[n], &c) == 1) { n++; line += c; }
            int k = llama_detokenize(v, ids, n, out, 1 << 22, rs, us);
            hex(out, k < 0 ? 0 : k); printf("\n");
            line = strtok_r(NULL, "\n", &save);
        }
    } else if (strcmp(argv[2], "meta") == 0) {
        printf("n_vocab %d bos %d eos %d eot %d sep %d nl %d pad %d add_bos %d add_eos %d add_sep %d\n", n_vocab,
               llama_vocab_bos(v), llama_vocab_eos(v), llama_vocab_eot(v), llama_vocab_sep(v), llama_vocab_nl(v), llama_vocab_pad(v),
               llama_vocab_get_add_bos(v), llama_vocab_get_add_eos(v), llama_vocab_get_add_sep(v));
        char piece[4096];
        for (int t = 0; t < n_vocab; t++) {
            printf("%d %d %d ", t, (int)llama_vocab_get_attr(v, t), (int)llama_vocab_is_eog(v, t));
            int k = llama_token_to_piece(v, t, piece, sizeof piece, 0, false); hex(piece, k < 0 ? 0 : k); printf(" ");
            k = llama_token_to_piece(v, t, piece, sizeof piece, 0, true); hex(piece, k < 0 ? 0 : k); printf(" ");
            k = llama_token_to_piece(v, t, piece, sizeof piece, 1, true); hex(piece, k < 0 ? 0 : k); printf("\n");
        }
    }
    llama_model_free(m);
    return 0;
}
