// What a Program's instructions touch and cost, read without running them: operands() (every
// buffer an instruction reads or writes, with its byte range: what the passes in
// program_passes.cpp and the replay's checks in bind_replay.cpp rely on), traffic, flops and
// footprint (Program.traffic/flops/footprint for profiling), the memory ranges the program covers,
// and the pointer fields into a buffer (rebind, pointers_into: repointing a program at other
// memory). The interpreter is program.cpp; buffer layouts per instruction are listed at its top.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "conv.hpp"
#include "fuse.hpp"
#include "instr_registry.hpp"
#include "program.hpp"
#include "program_internal.hpp"

namespace gd {

std::vector<Operand> operands(const Instr& in) {
    const int64_t e = in.f64 ? 8 : 4;  // element bytes
    const auto& i = in.i;
    std::vector<Operand> ops;
    const auto R = [&](int slot, int64_t n) {
        if (in.p[slot] != nullptr) ops.push_back({in.p[slot], n, true, false, slot});
    };
    const auto W = [&](int slot, int64_t n) {
        if (in.p[slot] != nullptr) ops.push_back({in.p[slot], n, false, true, slot});
    };
    const auto RW = [&](int slot, int64_t n) {
        if (in.p[slot] != nullptr) ops.push_back({in.p[slot], n, true, true, slot});
    };
    switch (in.code) {
        case Code::linear_fwd:
            W(0, e * i[0] * i[2]);
            R(1, e * i[0] * i[1]);
            R(2, e * i[2] * i[1]);
            R(3, e * i[2]);
            break;
        case Code::linear_bwd:
            W(0, e * i[0] * i[1]);
            W(1, e * i[2] * i[1]);
            W(2, e * i[2]);
            R(3, e * i[0] * i[2]);
            if (in.p[1] != nullptr) R(4, e * i[0] * i[1]);
            if (in.p[0] != nullptr) R(5, e * i[2] * i[1]);
            break;
        case Code::linear_bwd_sgd:
            W(0, e * i[0] * i[1]);
            if (i.size() < 4 || i[3] == 0) W(1, e * i[2] * i[1]);  // lazy: written on demand
            W(2, e * i[2]);
            R(3, e * i[0] * i[2]);
            R(4, e * i[0] * i[1]);
            RW(5, e * i[2] * i[1]);
            RW(6, e * i[2]);
            if (!in.lists[0].empty()) ops.push_back({in.lists[0][0], e * i[2] * i[1], true, true, -1});
            if (!in.lists[1].empty()) ops.push_back({in.lists[1][0], e * i[2], true, true, -1});
            break;
        case Code::act_fwd: W(0, e * i[1]); R(1, e * i[1]); break;
        case Code::act_bwd:
            W(0, e * i[1]);
            R(1, e * i[1]);
            R(2, e * i[1]);
            R(3, e * i[1]);
            break;
        case Code::copy: W(0, i[0]); R(1, i[0]); break;
        case Code::clip_norm: {  // the norm; every gradient is read and may be scaled
            const bool norm_only = in.d.size() > 2 && in.d[2] != 0;
            W(0, 8);
            for (size_t k = 0; k < in.lists[0].size(); ++k)
                ops.push_back({in.lists[0][k], e * i[k], true, !norm_only, -1});
            break;
        }
        case Code::conv:
            for (const ConvOperand& o : conv_instr_operands(in.p, i, e))
                ops.push_back({in.p[o.slot], o.bytes, o.read, o.write, o.slot});
            break;
        case Code::ew: {
            // each array operand's byte range, from the shape and its strides
            const int64_t nd = i[1];
            const int64_t* shape = i.data() + 2;
            const EwInfo& info = kEwOps[i[0]];
            for (int k = 0; k < 4; ++k) {
                int64_t lo, hi;
                if (in.p[k] == nullptr || !ew_span(shape, shape + nd * (k + 1), nd, lo, hi))
                    continue;
                const bool byte = (k == 1 && info.cond_first) || (k == 0 && info.bool_out);
                const int64_t item = byte ? 1 : e;
                ops.push_back({static_cast<char*>(in.p[k]) + lo * item, (hi - lo + 1) * item,
                               k > 0, k == 0, k});
            }
            break;
        }
        case Code::sgd:
        case Code::adam:
        case Code::rmsprop:
        case Code::adagrad: {
            // lists: params (rw), grads (r), then state (rw); the last list of adam, rmsprop
            // and adagrad is float32 steps; sgd's list 3 is a diagonal lr (r), list 4 the
            // direction of a matrix lr (p[0] eta (N, N), p[1] the direction (N))
            const auto& L = in.lists;
            const bool sgd = in.code == Code::sgd;
            for (size_t l = 0; l < L.size(); ++l)
                for (size_t k = 0; k < L[l].size(); ++k) {
                    const bool step = !sgd && l + 1 == L.size();
                    // (an adam or sgd fused with a clip_norm writes the clipped gradients)
                    const bool read_only = (l == 1 && in.p.size() != 1) || (sgd && l == 3);
                    ops.push_back({L[l][k], step ? 4 : e * i[k], true, !read_only, -1});
                }
            if ((in.code == Code::adam || sgd) && in.p.size() == 1) R(0, 8);  // clip's norm
            if (sgd && in.p.size() >= 2) {
                int64_t N = 0;
                for (size_t k = 0; k < L[0].size(); ++k) N += i[k];
                R(0, e * N * N);
                RW(1, e * N);
            }
            break;
        }
        case Code::call: instr_kind(i[0]).operands(in, ops); break;
        case Code::ew_fused: fused_operands(in, ops); break;
    }
    return ops;
}

std::vector<std::pair<int64_t, int64_t>> Program::traffic() const {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const Instr& in : code_) {
        int64_t rd = 0, wr = 0;
        for (const Operand& o : operands(in)) {
            if (o.read) rd += o.bytes;
            if (o.write) wr += o.bytes;
        }
        if (in.defer >= 0) {  // as a deferring replay runs it (plan_defer)
            const int64_t e = in.f64 ? 8 : 4, w = e * in.i[1] * in.i[2];
            const int64_t dyx = e * in.i[0] * (in.i[1] + in.i[2]);
            if (in.code == Code::linear_fwd) {  // + the update: W written, dy and x copies read
                wr += w;
                rd += dyx;
            } else {  // - W's update, + the copies of dy and x
                rd -= w;
                wr += dyx - w;
            }
        }
        out.emplace_back(rd, wr);
    }
    return out;
}

std::vector<int64_t> Program::flops() const {
    std::vector<int64_t> out;
    for (const Instr& in : code_) {
        const auto& i = in.i;
        int64_t f = 0;
        switch (in.code) {
            case Code::linear_fwd:
                f = 2 * i[0] * i[1] * i[2] + (i.size() > 3 && i[3] != 0 ? i[0] * i[2] : 0);
                break;
            case Code::linear_bwd:
                f = 2 * i[0] * i[1] * i[2] * ((in.p[0] != nullptr) + (in.p[1] != nullptr)) +
                    (in.p[2] != nullptr) * i[0] * i[2];
                break;
            case Code::conv: f = conv_instr_flops(in.p, i); break;
            case Code::call: f = instr_kind(i[0]).flops(in); break;
            case Code::ew_fused: f = fused_flops(in); break;
            case Code::ew: {  // one operation per element of the iteration shape
                f = 1;
                for (int64_t k = 0; k < i[1]; ++k) f *= i[2 + k];
                break;
            }
            case Code::linear_bwd_sgd:  // dx, dW, db and a 2-flop update per parameter
                f = 2 * i[0] * i[1] * i[2] * (1 + (in.p[0] != nullptr)) + 3 * i[2] * (i[1] + 1);
                break;
            default: {
                // elementwise and reductions: one operation per element written or read
                int64_t elems = 0;
                const int64_t e = in.f64 ? 8 : 4;
                for (const Operand& o : operands(in)) elems = std::max(elems, o.bytes / e);
                f = elems;
            }
        }
        out.push_back(f);
    }
    return out;
}

int64_t Program::footprint() const {
    int64_t total = 0;
    for (const auto& [a, b] : ranges()) total += int64_t(b - a);
    return total;
}

namespace program_detail {

// Does instruction `in` read (want_read) or write (want_write) memory overlapping [p, p + n)?
bool touches(const Instr& in, const void* p, int64_t n, bool want_read, bool want_write) {
    for (const Operand& o : operands(in))
        if (((want_read && o.read) || (want_write && o.write)) && overlaps(o.ptr, o.bytes, p, n))
            return true;
    return false;
}

}  // namespace program_detail

using program_detail::overlaps;
using program_detail::touches;

template <class F>
void Program::for_each_pointer_into(const void* from, int64_t bytes, const F& f) {
    const auto lo = reinterpret_cast<uintptr_t>(from);
    const auto visit = [&](void*& q) {
        const auto a = reinterpret_cast<uintptr_t>(q);
        if (q != nullptr && a >= lo && a < lo + uintptr_t(bytes)) f(q, int64_t(a - lo));
    };
    for (Instr& in : code_) {
        for (void*& q : in.p) visit(q);
        for (auto& l : in.lists)
            for (void*& q : l) visit(q);
    }
}

void Program::rebind(void* from, void* to, int64_t bytes) {
    for_each_pointer_into(from, bytes,
                          [&](void*& q, int64_t off) { q = static_cast<char*>(to) + off; });
}

std::vector<std::pair<void**, int64_t>> Program::pointers_into(const void* from, int64_t bytes) {
    std::vector<std::pair<void**, int64_t>> out;
    for_each_pointer_into(from, bytes, [&](void*& q, int64_t off) { out.emplace_back(&q, off); });
    return out;
}

bool Program::written_or_read_later(const void* p, int64_t bytes) const {
    for (const Instr& in : code_) {
        if (touches(in, p, bytes, false, true)) return true;
        if (in.code == Code::linear_bwd_sgd && in.i.size() >= 4 && in.i[3] != 0 &&
            overlaps(in.p[4], in.i[0] * in.i[1] * (in.f64 ? 8 : 4), p, bytes))
            return true;
    }
    return false;
}

std::vector<std::pair<uintptr_t, uintptr_t>> Program::ranges() const {
    std::vector<std::pair<uintptr_t, uintptr_t>> r, out;
    for (const Instr& in : code_)
        for (const Operand& o : operands(in))
            if (o.bytes > 0) {
                const auto a = reinterpret_cast<uintptr_t>(o.ptr);
                r.emplace_back(a, a + uintptr_t(o.bytes));
            }
    std::sort(r.begin(), r.end());
    for (const auto& [a, b] : r) {
        if (!out.empty() && a <= out.back().second)
            out.back().second = std::max(out.back().second, b);
        else
            out.emplace_back(a, b);
    }
    return out;
}

}  // namespace gd
