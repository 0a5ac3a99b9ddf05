// The passes that rewrite a recorded Program once, after recording (gd.compile calls optimize,
// then plan_defer): copy elision and the fusions of optimize (fuse_relu, fuse_sgd, fuse_clip, and
// the elementwise chains of fuse.cpp), then plan_defer, which picks the weight updates a replay
// may leave pending (their replay half is in program.cpp). Every pass keeps each result bit: it
// only moves work whose operands (program_analysis.cpp) nothing else touches.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "conv.hpp"
#include "fuse.hpp"
#include "parallel.hpp"
#include "program.hpp"
#include "program_internal.hpp"

namespace gd {
namespace {

// Batches up to this fuse a linear_bwd with its weight's SGD update (fuse_sgd): their weight
// gradient has one K block in every GEMM path (gemm.cpp), so the fused update forms it with the
// same bits.
constexpr int64_t kFuseSgdMaxBatch = 32;

}  // namespace

using program_detail::overlaps;
using program_detail::touches;

int Program::optimize(const std::vector<std::pair<void*, int64_t>>& pinned) {
    int removed = 0;
    for (size_t k = 0; k < code_.size();) {
        const Instr& cp = code_[k];
        if (cp.code != Code::copy || cp.i[0] <= 0) {
            ++k;
            continue;
        }
        void* dst = cp.p[0];
        void* src = cp.p[1];
        const int64_t n = cp.i[0];
        bool ok = !overlaps(dst, n, src, n);
        for (const auto& pin : pinned) ok = ok && !overlaps(src, n, pin.first, pin.second);
        // the one writer of src, which must write exactly src through a pointer slot
        int64_t writer = -1;
        for (size_t j = 0; ok && j < code_.size(); ++j) {
            if (j == k) continue;
            if (touches(code_[j], src, n, true, false)) ok = false;  // someone else reads src
            if (!touches(code_[j], src, n, false, true)) continue;
            if (writer != -1 || j > k) ok = false;
            writer = static_cast<int64_t>(j);
        }
        int slot = -1;
        if (ok && writer >= 0) {
            for (const Operand& o : operands(code_[writer]))
                if (o.write && o.ptr == src && o.bytes == n && o.slot >= 0 && !o.read) slot = o.slot;
            // the writer must not touch dst itself, nor anything between it and the copy
            for (size_t j = static_cast<size_t>(writer); slot >= 0 && j < k; ++j)
                if (touches(code_[j], dst, n, true, true)) slot = -1;
        }
        if (slot < 0) {
            ++k;
            continue;
        }
        code_[writer].p[slot] = dst;
        code_.erase(code_.begin() + static_cast<std::ptrdiff_t>(k));
        ++removed;
    }
    removed += fuse_relu(pinned) + fuse_sgd() + fuse_clip();
    if (fusion_enabled()) removed += fuse_elementwise(code_, pinned);  // (fuse.hpp)
    return removed;
}

// clip_norm (scaling its gradients) directly followed by the adam or sgd (no matrix lr) that
// reads exactly those gradients (same list, same sizes, same dtype): the clip_norm only computes
// the norm and the update scales each gradient block by T(coef) as it loads it, storing it back.
// The scaled values, the update and the gradients left behind are bitwise those of the pair (each
// element is the same rounded product, read once by the update), and the gradients are read and
// written once instead of twice. Removes nothing (returns 0).
int Program::fuse_clip() {
    for (size_t k = 0; k + 1 < code_.size(); ++k) {
        Instr& cl = code_[k];
        Instr& ad = code_[k + 1];
        // (an sgd with a matrix lr has pointers: not fused)
        const bool adam = ad.code == Code::adam && ad.d.size() == 8;
        const bool sgd = ad.code == Code::sgd && ad.d.size() == 6;
        if (cl.code != Code::clip_norm || cl.d.size() != 2 || !(adam || sgd) ||
            ad.f64 != cl.f64 || !ad.p.empty() || ad.lists.size() < 2 ||
            ad.lists[1] != cl.lists[0] || ad.i != cl.i)
            continue;
        // no gradient may overlap a parameter or a state buffer the update writes
        const int64_t e = cl.f64 ? 8 : 4;
        bool ok = true;
        for (size_t g = 0; ok && g < cl.lists[0].size(); ++g)
            for (size_t l = 0; ok && l < ad.lists.size(); ++l) {
                if (l == 1) continue;
                const bool steps = adam && l + 1 == ad.lists.size();  // float32 step counts
                for (size_t q = 0; ok && q < ad.lists[l].size(); ++q)
                    ok = !overlaps(cl.lists[0][g], e * cl.i[g], ad.lists[l][q],
                                   steps ? 4 : e * ad.i[q]);
            }
        if (!ok) continue;
        cl.d.push_back(1);
        ad.p = {cl.p[0]};
        ad.d.push_back(cl.d[1]);
    }
    return 0;
}

// linear_fwd (batch > 1) or a conv forward (conv.hpp, kind 0) writing X, then act_fwd relu X -> Y,
// where nothing else reads or writes X (not pinned either) and nothing from the producer up to the
// act_fwd touches Y: the producer writes Y with the ReLU applied as its GEMM's epilogue
// (linear_forward_relu; the conv forward's relu flag), and the act_fwd goes. Bitwise the same
// values in Y; X is not written.
int Program::fuse_relu(const std::vector<std::pair<void*, int64_t>>& pinned) {
    int removed = 0;
    for (size_t a = 0; a < code_.size();) {
        const Instr& act = code_[a];
        if (act.code != Code::act_fwd || static_cast<Act>(act.i[0]) != Act::relu) {
            ++a;
            continue;
        }
        void* X = act.p[1];
        void* Y = act.p[0];
        const int64_t n = (act.f64 ? 8 : 4) * act.i[1];
        size_t L = a;
        while (L > 0 && !touches(code_[L - 1], X, n, false, true)) --L;
        bool ok = L > 0 && n > 0 && !overlaps(X, n, Y, n), conv = false;
        if (ok) {
            --L;
            const Instr& lf = code_[L];
            ok = lf.code == Code::linear_fwd && lf.f64 == act.f64 && lf.i.size() == 3 &&
                 lf.i[0] > 1 && lf.p[0] == X && (act.f64 ? 8 : 4) * lf.i[0] * lf.i[2] == n;
            conv = lf.code == Code::conv && lf.f64 == act.f64 && lf.p[0] == X &&
                   conv_fwd_relu_fusable(lf.i, n / (act.f64 ? 8 : 4));
            ok = ok || conv;
        }
        for (const auto& pin : pinned) ok = ok && !overlaps(X, n, pin.first, pin.second);
        for (size_t j = 0; ok && j < code_.size(); ++j)
            if (j != a && j != L && touches(code_[j], X, n, true, true)) ok = false;
        for (size_t j = L; ok && j < a; ++j)
            if (touches(code_[j], Y, n, true, true)) ok = false;
        if (!ok) {
            ++a;
            continue;
        }
        code_[L].p[0] = Y;
        if (conv) code_[L].i[1 + kConvInts] = 1;
        else code_[L].i.push_back(1);
        code_.erase(code_.begin() + static_cast<std::ptrdiff_t>(a));
        ++removed;
    }
    return removed;
}

// linear_bwd at batch <= kFuseSgdMaxBatch followed (later) by the sgd instruction that updates its weight with
// its dW -> one linear_bwd_sgd, when nothing in between touches the weight, its gradient or its
// momentum buffer and nothing else writes that gradient. The bias joins when the same holds.
int Program::fuse_sgd() {
    int removed = 0;
    for (size_t L = 0; L < code_.size(); ++L) {
        if (code_[L].code != Code::linear_bwd || code_[L].i[0] < 1 ||
            code_[L].i[0] > kFuseSgdMaxBatch || code_[L].p[1] == nullptr)
            continue;
        const Instr& lb = code_[L];
        const int64_t e = lb.f64 ? 8 : 4, IN = lb.i[1], OUT = lb.i[2];
        void* dW = lb.p[1];
        void* db = lb.p[2];
        void* Wp = lb.p[5];
        size_t S = L + 1;
        int64_t kw = -1;
        for (; S < code_.size() && kw < 0; ++S) {
            if (code_[S].code != Code::sgd || code_[S].f64 != lb.f64) continue;
            if (code_[S].lists.size() > 3 || !code_[S].p.empty()) continue;  // an array lr
            const auto& G = code_[S].lists[1];
            for (size_t k = 0; k < G.size(); ++k)
                if (G[k] == dW) kw = static_cast<int64_t>(k);
        }
        if (kw < 0) continue;
        --S;
        Instr& sg = code_[S];
        const bool mom = !sg.lists[2].empty();
        if (sg.lists[0][kw] != Wp || sg.i[kw] != OUT * IN) continue;
        // may the update of (param p, grad g, buffer m) move from S back to L?
        const auto movable = [&](void* p, void* g, void* m, int64_t bytes) {
            for (size_t j = L + 1; j < S; ++j)
                if (touches(code_[j], p, bytes, true, true) || touches(code_[j], g, bytes, true, true) ||
                    (m != nullptr && touches(code_[j], m, bytes, true, true)))
                    return false;
            for (size_t j = 0; j < code_.size(); ++j)
                if (j != L && j != S && touches(code_[j], g, bytes, false, true)) return false;
            return true;
        };
        void* mw = mom ? sg.lists[2][kw] : nullptr;
        if (!movable(Wp, dW, mw, e * OUT * IN)) continue;
        int64_t kb = -1;
        if (db != nullptr)
            for (size_t k = 0; k < sg.lists[1].size(); ++k)
                if (sg.lists[1][k] == db && sg.i[k] == OUT &&
                    movable(sg.lists[0][k], db, mom ? sg.lists[2][k] : nullptr, e * OUT))
                    kb = static_cast<int64_t>(k);
        Instr f;
        f.code = Code::linear_bwd_sgd;
        f.f64 = lb.f64;
        f.p = {lb.p[0], dW, db, lb.p[3], lb.p[4], Wp, kb >= 0 ? sg.lists[0][kb] : nullptr};
        f.i = {lb.i[0], IN, OUT};
        f.d = sg.d;
        f.lists = {mom ? std::vector<void*>{mw} : std::vector<void*>{},
                   mom && kb >= 0 ? std::vector<void*>{sg.lists[2][kb]} : std::vector<void*>{}};
        // drop the moved parameters from the sgd instruction (higher index first)
        std::vector<int64_t> drop{kw};
        if (kb >= 0) drop.push_back(kb);
        std::sort(drop.rbegin(), drop.rend());
        for (int64_t k : drop) {
            for (auto& l : sg.lists)
                if (!l.empty()) l.erase(l.begin() + k);
            sg.i.erase(sg.i.begin() + k);
        }
        code_[L] = std::move(f);
        if (sg.lists[0].empty()) {
            code_.erase(code_.begin() + static_cast<std::ptrdiff_t>(S));
            ++removed;
        }
    }
    return removed;
}

int Program::plan_defer() {
    flush();
    for (Instr& in : code_) in.defer = -1;
    defer_.clear();
    for (size_t L = 0; L < code_.size(); ++L) {
        const Instr& bw = code_[L];
        // (a layer that passes a gradient on reads W in its backward anyway: deferring its
        // update measured no faster; docs/performance.md)
        if (bw.code != Code::linear_bwd_sgd || !bw.lists[0].empty() || bw.p[0] != nullptr)
            continue;
        const int64_t e = bw.f64 ? 8 : 4, B = bw.i[0], IN = bw.i[1], OUT = bw.i[2];
        void* W = bw.p[5];
        // linear_forward_sgd(_batch) runs on one thread, as the product and update do below
        // this size (they run in parallel above it, and so would their unfused pair)
        if (IN < 2 || OUT < 1 || 2 * B * OUT * IN >= kMatrixParallelFlops) continue;
        const int64_t bytes = e * OUT * IN;
        bool later = false;
        for (size_t j = L + 1; j < code_.size() && !later; ++j)
            later = touches(code_[j], W, bytes, true, true);
        if (later) continue;
        size_t F = 0;
        while (F < L && !touches(code_[F], W, bytes, true, true)) ++F;
        const Instr& fw = code_[F];
        // (at batch 1 a plain forward; at a larger batch its ReLU may be fused in)
        if (F == L || fw.code != Code::linear_fwd || fw.f64 != bw.f64 ||
            (B == 1 && fw.i.size() != 3) || fw.i[0] != B || fw.i[1] != IN ||
            fw.i[2] != OUT || fw.p[2] != W || fw.defer >= 0)
            continue;
        Deferred df;
        df.fwd = F;
        df.bwd = L;
        if (bw.f64) {
            df.dy64.resize(static_cast<size_t>(B * OUT));
            df.x64.resize(static_cast<size_t>(B * IN));
        } else {
            df.dy32.resize(static_cast<size_t>(B * OUT));
            df.x32.resize(static_cast<size_t>(B * IN));
        }
        code_[F].defer = code_[L].defer = static_cast<int>(defer_.size());
        defer_.push_back(std::move(df));
    }
    return static_cast<int>(defer_.size());
}

}  // namespace gd
