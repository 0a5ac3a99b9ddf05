// Elementwise chain fusion (fuse.hpp). The pass works on the instruction list after the other
// peephole passes; the runner (run_fused_chain in elementwise.cpp, per ISA) runs the members' row
// loops tile by tile.
//
// A chain starts at an elementwise instruction and takes each later elementwise instruction of
// the same dtype and iteration shape (an act_fwd/act_bwd of N contiguous elements matches any
// shape of N elements) that may move up to the chain's position and run interleaved with it:
//  - it conflicts with no instruction it is moved over (it writes nothing they read or write, and
//    reads nothing they write);
//  - every buffer it shares with a member, where either writes, is addressed identically by both
//    (same pointer and the same strides along every dim of size > 1) and the writer's strides
//    are nonzero there: element k of the iteration then touches the same address in both and
//    different elements touch different addresses, so running the members block by block keeps
//    every dependence of the unfused order.
// An instruction that fails these tests is moved over by later candidates like any other, so a
// chain spans the independent instructions between its members. A member's output goes to a
// scratch block instead of memory when it is not pinned, no instruction outside the chain touches
// it and, inside the chain, only later members read it (the same way).
#include "fuse.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "elementwise.hpp"
#include "fuse_kernel.hpp"
#include "instr_registry.hpp"
#include "kernels.hpp"
#include "reduce_ops.hpp"

namespace gd {
namespace {

// Elements per block: a multiple of 64 (a block boundary inside a row keeps each element's place
// in its kernel's vector loop) and at most the kernels' parallel chunk, so a member's kernel
// never opens a parallel region of its own.
constexpr int64_t kBlock = 2048;

// A chain stops looking after moving over this many instructions (the pass stays fast).
constexpr size_t kWindow = 64;

enum Kind : int64_t { kEw = 0, kActFwd = 1, kActBwd = 2, kRed = 3, kRow = 4 };

// A reduction member (kRed) reduces each row of the chain's innermost merged dim into one element
// of y (y's stride 0 there): the runner's tiles hold whole rows (a row of at most kFusedRow
// elements, the runner's piece), so a row's elements, produced by earlier members in the same
// tile, are all there when it runs. Its op: kRedSumTo (an `ew` sum_to: run_sum's 8 partials),
// kRedSum / kRedMean (a `reduce` sum / mean: reduce.cpp's lanes). A row member (kRow) is an ew
// op on one element per row (e.g. the (N, 1) statistics of a normalisation), run once per row.
// Their outputs ("row-level": stride 0 along the row) are read by later members only with that
// same layout, i.e. after the row's value is made in the same tile (compatible()), and never
// live in scratch.
enum RedOp : int64_t { kRedSumTo = 0, kRedSum = 1, kRedMean = 2 };
constexpr int64_t kFusedRow = 1024;  // = kPiece of the runner (elementwise.cpp)

struct Member {
    int64_t kind = kEw, op = 0;
    void* p[4] = {nullptr, nullptr, nullptr, nullptr};
    bool contig = false;             // an act member: every operand C-contiguous over the shape
    std::vector<int64_t> st[4];      // an ew member's strides (nd each) over its shape
    double d[3] = {0, 0, 0};
    std::vector<Operand> ops;        // operands() of the original instruction
};

int64_t numel(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
    std::vector<int64_t> st(shape.size());
    int64_t s = 1;
    for (size_t k = shape.size(); k-- > 0;) {
        st[k] = s;
        s *= shape[k];
    }
    return st;
}

bool overlaps(const void* a, int64_t na, const void* b, int64_t nb) {
    const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return na > 0 && nb > 0 && x < y + uintptr_t(nb) && y < x + uintptr_t(na);
}

bool conflict(const std::vector<Operand>& a, const std::vector<Operand>& b) {
    for (const Operand& x : a)
        for (const Operand& y : b)
            if ((x.write || y.write) && overlaps(x.ptr, x.bytes, y.ptr, y.bytes)) return true;
    return false;
}

// Merges the dims of `shape` (size-1 dims dropped) over the strides of members `ms`' four slots,
// as build() does; returns the merged shape and each member's merged strides.
std::vector<int64_t> merge_dims(const std::vector<const std::vector<int64_t>*>& st,
                                const std::vector<int64_t>& shape,
                                std::vector<std::vector<int64_t>>& mst) {
    std::vector<int64_t> ms;
    mst.assign(st.size(), {});
    for (size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] == 1) continue;
        bool merge = !ms.empty();
        for (size_t k = 0; k < st.size() && merge; ++k) merge = mst[k].back() == (*st[k])[d] * shape[d];
        if (merge) {
            ms.back() *= shape[d];
            for (size_t k = 0; k < st.size(); ++k) mst[k].back() = (*st[k])[d];
            continue;
        }
        ms.push_back(shape[d]);
        for (size_t k = 0; k < st.size(); ++k) mst[k].push_back((*st[k])[d]);
    }
    return ms;
}

// Whether a row-level member (a reduction or a row member) fits the chain: over `shape`, its
// strides merged with `others'` (the chain's: empty for the member alone), the innermost merged dim
// has at most kFusedRow elements and is the one dim along which its row-level operands (a
// reduction's y; every operand of a row member) have stride 0, and y has a nonzero stride along
// every other merged dim (at least one). Then each row has its own element of y, and a
// reduction's unfused kernel (sum_to: run_sum over each row; reduce: one rows-path block per
// output) adds each row's elements in the order the runner does; `alone`: also x contiguous along
// the row (in the chain it may be a scratch block instead).
bool row_fits(const Member& r, const std::vector<const std::vector<int64_t>*>& others,
              const std::vector<int64_t>& shape, bool alone) {
    std::vector<const std::vector<int64_t>*> st = {&r.st[0], &r.st[1], &r.st[2], &r.st[3]};
    st.insert(st.end(), others.begin(), others.end());
    std::vector<std::vector<int64_t>> mst;
    const std::vector<int64_t> ms = merge_dims(st, shape, mst);
    if (ms.size() < 2) return false;
    const size_t last = ms.size() - 1;
    if (ms[last] > kFusedRow || mst[0][last] != 0) return false;
    for (size_t d = 0; d < last; ++d)
        if (mst[0][d] == 0) return false;
    if (r.kind == kRed) return !alone || mst[1][last] == 1;
    for (int k = 1; k < 4; ++k)
        if (r.p[k] != nullptr && mst[static_cast<size_t>(k)][last] != 0) return false;
    return true;
}

// An ew member whose shape is the chain's with a trailing run of dims set to 1 (say an (N, 1)
// op in an (N, M) chain whose rows are reduced): as a row member over the chain's shape (its
// strides 0 along those dims), run once per row. False if it cannot be one.
bool as_row_member(Member& m, std::vector<int64_t>& shape, const std::vector<int64_t>& chain) {
    if (m.kind != kEw || chain.empty() || shape.size() != chain.size()) return false;
    size_t k0 = shape.size();
    while (k0 > 0 && shape[k0 - 1] == 1) --k0;
    if (k0 == shape.size()) return false;
    for (size_t d = 0; d < k0; ++d)
        if (shape[d] != chain[d]) return false;
    for (int k = 0; k < 4; ++k) {
        if (m.p[k] == nullptr) m.st[k].assign(chain.size(), 0);
        for (size_t d = k0; d < chain.size(); ++d) m.st[k][d] = 0;
    }
    m.kind = kRow;
    shape = chain;
    return row_fits(m, {}, chain, true);
}

// Can `in` be a member, and with which iteration shape (empty for an act member: N elements)?
// The registered "reduce" kind (bind_reduce.cpp) records as a Code::call whose i[0] is its id.
bool is_reduce(const Instr& in) {
    static const int64_t id = find_instr_kind("reduce");
    return in.code == Code::call && id >= 0 && !in.i.empty() && in.i[0] == id;
}

bool member_of(const Instr& in, Member& m, std::vector<int64_t>& shape, int64_t& n) {
    const auto& i = in.i;
    if (in.code == Code::ew && static_cast<Ew>(i[0]) == Ew::sum_to) {
        // a reduction: y is broadcast (stride 0) over the summed dims
        const int64_t nd = i[1];
        shape.assign(i.begin() + 2, i.begin() + 2 + nd);
        n = numel(shape);
        m.kind = kRed;
        m.op = kRedSumTo;
        m.p[0] = in.p[0];
        m.p[1] = in.p[1];
        m.st[0].assign(i.begin() + 2 + nd, i.begin() + 2 + 2 * nd);
        m.st[1].assign(i.begin() + 2 + 2 * nd, i.begin() + 2 + 3 * nd);
        m.st[2].assign(static_cast<size_t>(nd), 0);
        m.st[3].assign(static_cast<size_t>(nd), 0);
        if (!row_fits(m, {}, shape, true)) return false;
    } else if (is_reduce(in)) {
        // reduce p[y, idx, x] i[kind, op, nd, axes, keepdim, shape, x strides]: sum and mean
        const std::vector<int64_t> i(in.i.begin() + 1, in.i.end());  // (from op on)
        const Red op = static_cast<Red>(i[0]);
        if ((op != Red::sum && op != Red::mean) || in.p[1] != nullptr || in.p[2] == nullptr)
            return false;
        const int64_t nd = i[1];
        const auto axes = static_cast<uint64_t>(i[2]);
        shape.assign(i.begin() + 4, i.begin() + 4 + nd);
        n = numel(shape);
        m.kind = kRed;
        m.op = op == Red::sum ? kRedSum : kRedMean;
        m.p[0] = in.p[0];
        m.p[1] = in.p[2];
        m.st[0].assign(static_cast<size_t>(nd), 0);  // y: C order over the kept dims
        int64_t s = 1;
        for (int64_t d = nd; d-- > 0;)
            if (!((axes >> d) & 1u)) {
                m.st[0][static_cast<size_t>(d)] = s;
                s *= shape[static_cast<size_t>(d)];
            }
        m.st[1].assign(i.begin() + 4 + nd, i.begin() + 4 + 2 * nd);
        m.st[2].assign(static_cast<size_t>(nd), 0);
        m.st[3].assign(static_cast<size_t>(nd), 0);
        if (!row_fits(m, {}, shape, true)) return false;
    } else if (in.code == Code::ew) {
        const int64_t nd = i[1];
        shape.assign(i.begin() + 2, i.begin() + 2 + nd);
        n = numel(shape);
        m.kind = kEw;
        m.op = i[0];
        for (int k = 0; k < 4; ++k) {
            m.p[k] = in.p[k];
            m.st[k].assign(i.begin() + 2 + nd * (k + 1), i.begin() + 2 + nd * (k + 2));
        }
        for (int64_t d = 0; d < nd; ++d)  // the output must not repeat an element
            if (shape[d] > 1 && m.st[0][d] == 0) return false;
        for (int k = 0; k < 3; ++k) m.d[k] = in.d[k];
    } else if (in.code == Code::act_fwd || in.code == Code::act_bwd) {
        shape.clear();
        n = i[1];
        m.kind = in.code == Code::act_fwd ? kActFwd : kActBwd;
        m.op = i[0];
        m.contig = true;
        for (size_t k = 0; k < 4 && k < in.p.size(); ++k) m.p[k] = in.p[k];
        m.d[0] = in.d[0];
    } else {
        return false;
    }
    if (n <= 0) return false;
    m.ops = operands(in);
    if (is_reduce(in))  // x is the member's slot 1 (the idx slot is null)
        for (Operand& o : m.ops)
            if (o.slot == 2) o.slot = 1;
    return true;
}

// Member m's strides for slot k over `shape` (the chain's).
std::vector<int64_t> strides_of(const Member& m, int k, const std::vector<int64_t>& shape) {
    return m.contig ? contiguous_strides(shape) : m.st[k];
}

// Same addressing of slot a of member x and slot b of member y over `shape`?
bool same_layout(const Member& x, int a, const Member& y, int b,
                 const std::vector<int64_t>& shape) {
    if (x.p[a] != y.p[b]) return false;
    if (x.contig && y.contig) return true;
    const std::vector<int64_t> sx = strides_of(x, a, shape), sy = strides_of(y, b, shape);
    for (size_t d = 0; d < shape.size(); ++d)
        if (shape[d] > 1 && sx[d] != sy[d]) return false;
    return true;
}

// May member c run interleaved (element by element) with member m?
bool compatible(const Member& c, const Member& m, const std::vector<int64_t>& shape) {
    for (const Operand& x : c.ops)
        for (const Operand& y : m.ops) {
            if (!(x.write || y.write) || !overlaps(x.ptr, x.bytes, y.ptr, y.bytes)) continue;
            if (x.slot < 0 || y.slot < 0 || !same_layout(c, x.slot, m, y.slot, shape))
                return false;
        }
    return true;
}

struct Chain {
    std::vector<size_t> index;  // into code, ascending
    std::vector<Member> members;
    std::vector<int64_t> shape;  // empty while every member is an act member
    int64_t n = 0;
};

// The ew_fused instruction of a chain (at least two members).
Instr build(const Chain& ch, bool f64, const std::vector<std::vector<Operand>>& all_ops,
            const std::vector<std::pair<void*, int64_t>>& pinned) {
    const size_t M = ch.members.size();
    std::vector<int64_t> shape = ch.shape.empty() ? std::vector<int64_t>{ch.n} : ch.shape;
    const int64_t nd0 = static_cast<int64_t>(shape.size());
    // every member's strides over the chain's shape
    std::vector<std::vector<std::vector<int64_t>>> st(M);
    for (size_t j = 0; j < M; ++j)
        for (int k = 0; k < 4; ++k) st[j].push_back(strides_of(ch.members[j], k, shape));
    // outputs that may live in a scratch block
    std::vector<int64_t> scratch(M, -1);
    int64_t S = 0;
    for (size_t j = 0; j < M; ++j) {
        const Member& m = ch.members[j];
        const Operand* y = nullptr;
        for (const Operand& o : m.ops)
            if (o.slot == 0 && o.write) y = &o;
        if (y == nullptr || m.kind == kRed || m.kind == kRow) continue;  // (row-level: memory)
        bool ok = true;
        for (const auto& pin : pinned) ok = ok && !overlaps(y->ptr, y->bytes, pin.first, pin.second);
        bool read_in_chain = false;
        for (size_t t = 0; ok && t < all_ops.size(); ++t) {
            const auto pos = std::find(ch.index.begin(), ch.index.end(), t);
            if (pos == ch.index.end()) {
                for (const Operand& o : all_ops[t])
                    if (overlaps(o.ptr, o.bytes, y->ptr, y->bytes)) ok = false;
                continue;
            }
            const size_t q = static_cast<size_t>(pos - ch.index.begin());
            for (const Operand& o : ch.members[q].ops) {
                if (q == j && o.slot == 0) continue;
                // (its own input too: y = f(y) reads what memory holds from the last replay)
                if (!overlaps(o.ptr, o.bytes, y->ptr, y->bytes)) continue;
                if (q <= j || o.write || o.slot <= 0) ok = false;  // (same layout: compatible())
                else read_in_chain = true;
            }
        }
        // (an output that nothing reads is still written, as unfused)
        if (ok && read_in_chain) scratch[j] = 0;  // (its block: below)
    }
    // scratch blocks are reused once their value is dead: a block is free for member j's output
    // when every reader of its last value comes before j (a tile then needs as many blocks as
    // values live at once, which keeps it in L1, instead of one per intermediate)
    std::vector<int64_t> last_read(M, -1);
    for (size_t j = 0; j < M; ++j)
        for (int k = 1; k < 4; ++k) {
            if (ch.members[j].p[k] == nullptr) continue;
            for (size_t q = 0; q < j; ++q)
                if (scratch[q] >= 0 && ch.members[q].p[0] == ch.members[j].p[k])
                    last_read[q] = static_cast<int64_t>(j);
        }
    std::vector<int64_t> free_blocks;
    for (size_t j = 0; j < M; ++j) {
        for (size_t q = 0; q < j; ++q)  // values whose last reader was j - 1
            if (scratch[q] >= 0 && last_read[q] == static_cast<int64_t>(j) - 1)
                free_blocks.push_back(scratch[q]);
        if (scratch[j] < 0) continue;
        if (free_blocks.empty()) {
            scratch[j] = S++;
        } else {
            scratch[j] = free_blocks.back();
            free_blocks.pop_back();
        }
    }
    // merge the dims: drop size 1, merge a dim into the previous when every operand allows it
    std::vector<int64_t> ms;
    std::vector<std::vector<std::vector<int64_t>>> mst(M, std::vector<std::vector<int64_t>>(4));
    for (int64_t d = 0; d < nd0; ++d) {
        if (shape[d] == 1) continue;
        bool merge = !ms.empty();
        for (size_t j = 0; j < M && merge; ++j)
            for (int k = 0; k < 4 && merge; ++k)
                merge = mst[j][k].back() == st[j][k][d] * shape[d];
        if (merge) {
            ms.back() *= shape[d];
            for (size_t j = 0; j < M; ++j)
                for (int k = 0; k < 4; ++k) mst[j][k].back() = st[j][k][d];
            continue;
        }
        ms.push_back(shape[d]);
        for (size_t j = 0; j < M; ++j)
            for (int k = 0; k < 4; ++k) mst[j][k].push_back(st[j][k][d]);
    }
    if (ms.empty()) {  // one element
        ms.push_back(1);
        for (size_t j = 0; j < M; ++j)
            for (int k = 0; k < 4; ++k) mst[j][k].push_back(0);
    }
    const int64_t nd = static_cast<int64_t>(ms.size());
    // the block: whole inner dims up to kBlock elements, then rows of the split dim
    int64_t split = nd - 1, inner = 1;
    while (split > 0 && inner * ms[split] <= kBlock) inner *= ms[split--];
    const int64_t rows = std::max<int64_t>(1, std::min(ms[split], kBlock / inner));

    Instr f;
    f.code = Code::ew_fused;
    f.f64 = f64;
    f.i = {static_cast<int64_t>(M), nd};
    f.i.insert(f.i.end(), ms.begin(), ms.end());
    f.i.insert(f.i.end(), {split, rows, S});
    for (size_t j = 0; j < M; ++j) {
        const Member& m = ch.members[j];
        f.i.push_back(m.kind);
        f.i.push_back(m.op);
        std::vector<void*> ptrs(m.p, m.p + 4);
        int64_t src[4] = {-1, -1, -1, -1};
        if (scratch[j] >= 0) {
            src[0] = scratch[j];
            ptrs[0] = nullptr;
        }
        for (int k = 1; k < 4; ++k) {
            if (m.p[k] == nullptr) continue;
            for (size_t q = 0; q < j; ++q)  // the (one) scratch writer this reads
                if (scratch[q] >= 0 && ch.members[q].p[0] == m.p[k]) {
                    src[k] = scratch[q];
                    ptrs[k] = nullptr;
                }
        }
        f.i.insert(f.i.end(), src, src + 4);
        for (int k = 0; k < 4; ++k) f.i.insert(f.i.end(), mst[j][k].begin(), mst[j][k].end());
        f.d.insert(f.d.end(), m.d, m.d + 3);
        f.lists.push_back(std::move(ptrs));
    }
    return f;
}

}  // namespace

bool fusion_enabled() {
    const char* e = std::getenv("GRADDESC_FUSE");
    return e == nullptr || std::strcmp(e, "0") != 0;
}

int fuse_elementwise(std::vector<Instr>& code, const std::vector<std::pair<void*, int64_t>>& pinned) {
    int removed = 0;
    // GRADDESC_FUSE_ROWS (read at each recording, for tests and benchmarks): 0 records chains
    // without row reductions and row members (as before them), 1 with reductions only
    const char* rows_env = std::getenv("GRADDESC_FUSE_ROWS");
    const int rows_mode = rows_env == nullptr ? 2 : std::atoi(rows_env);
    for (size_t s = 0; s < code.size(); ++s) {
        Chain ch;
        Member first;
        std::vector<int64_t> shape;
        int64_t n = 0;
        if (!member_of(code[s], first, shape, n)) continue;
        if (first.kind == kRed && rows_mode < 1) continue;
        const bool f64 = code[s].f64;
        ch.index.push_back(s);
        ch.members.push_back(std::move(first));
        ch.shape = shape;
        ch.n = n;
        std::vector<std::vector<Operand>> skipped;  // operands of the instructions moved over
        for (size_t t = s + 1; t < code.size() && skipped.size() < kWindow; ++t) {
            Member m;
            std::vector<Operand> ops = operands(code[t]);
            bool ok = code[t].f64 == f64 && member_of(code[t], m, shape, n);
            if (ok && m.kind == kRed && rows_mode < 1) ok = false;
            if (ok && n != ch.n) {
                ok = rows_mode >= 2 && as_row_member(m, shape, ch.shape);
                n = ch.n;
            }
            // a shaped member fixes the chain's shape (act members fit any shape of n elements)
            if (ok && !shape.empty() && !ch.shape.empty()) ok = shape == ch.shape;
            const std::vector<int64_t>& sh = ch.shape.empty() ? shape : ch.shape;
            for (size_t q = 0; ok && q < skipped.size(); ++q) ok = !conflict(ops, skipped[q]);
            for (size_t q = 0; ok && q < ch.members.size(); ++q)
                ok = compatible(m, ch.members[q], sh.empty() ? std::vector<int64_t>{n} : sh);
            if (!ok) {
                skipped.push_back(std::move(ops));
                continue;
            }
            if (ch.shape.empty()) ch.shape = shape;
            ch.index.push_back(t);
            ch.members.push_back(std::move(m));
        }
        // a row-level member must still fit over the chain's strides: the chain ends before the
        // first one that does not (a prefix of a chain is a chain: its members were checked
        // against earlier ones only)
        for (size_t j = 0; j < ch.members.size(); ++j) {
            const Member& r = ch.members[j];
            if (r.kind != kRed && r.kind != kRow) continue;
            const std::vector<int64_t> sh = ch.shape.empty() ? std::vector<int64_t>{ch.n} : ch.shape;
            std::vector<std::vector<int64_t>> own;  // (act members: contiguous strides)
            std::vector<const std::vector<int64_t>*> others;
            for (const Member& q : ch.members)
                for (int k = 0; k < 4; ++k) {
                    if (q.contig) own.push_back(contiguous_strides(sh));
                }
            size_t a = 0;
            for (const Member& q : ch.members)
                for (int k = 0; k < 4; ++k) others.push_back(q.contig ? &own[a++] : &q.st[k]);
            if (!row_fits(r, others, sh, false)) {
                ch.index.resize(j);
                ch.members.resize(j);
                break;
            }
        }
        if (ch.members.size() < 2) continue;
        std::vector<std::vector<Operand>> all_ops;
        for (const Instr& in : code) all_ops.push_back(operands(in));
        Instr f = build(ch, f64, all_ops, pinned);
        code[s] = std::move(f);
        for (size_t k = ch.index.size(); k-- > 1;) {
            code.erase(code.begin() + static_cast<std::ptrdiff_t>(ch.index[k]));
            ++removed;
        }
    }
    return removed;
}

void fused_operands(const Instr& in, std::vector<Operand>& ops) {
    const auto& i = in.i;
    const int64_t M = i[0], nd = i[1];
    const int64_t* shape = i.data() + 2;
    const int64_t* rec = shape + nd + 3;
    const int64_t e = in.f64 ? 8 : 4;
    const size_t first = ops.size();
    for (int64_t j = 0; j < M; ++j, rec += 6 + 4 * nd) {
        const int64_t kind = rec[0];
        const EwInfo* info = kind == kEw || kind == kRow ? &kEwOps[rec[1]] : nullptr;
        for (int k = 0; k < 4; ++k) {
            void* p = in.lists[static_cast<size_t>(j)][static_cast<size_t>(k)];
            int64_t lo, hi;
            if (p == nullptr || !ew_span(shape, rec + 6 + k * nd, nd, lo, hi)) continue;
            const bool byte = info != nullptr && ((k == 1 && info->cond_first) ||
                                                  (k == 0 && info->bool_out));
            const int64_t item = byte ? 1 : e;
            Operand o{static_cast<char*>(p) + lo * item, (hi - lo + 1) * item, k > 0, k == 0, -1};
            bool merged = false;
            for (size_t q = first; q < ops.size() && !merged; ++q)
                if (ops[q].ptr == o.ptr && ops[q].bytes == o.bytes) {
                    ops[q].read = ops[q].read || o.read;
                    ops[q].write = ops[q].write || o.write;
                    merged = true;
                }
            if (!merged) ops.push_back(o);
        }
    }
}

int64_t fused_flops(const Instr& in) {
    const int64_t M = in.i[0], nd = in.i[1];
    int64_t n = 1;
    for (int64_t d = 0; d < nd; ++d) n *= in.i[2 + d];
    const int64_t rows = n / std::max<int64_t>(1, in.i[2 + nd - 1]);
    const int64_t* rec = in.i.data() + 2 + nd + 3;
    int64_t f = 0;
    for (int64_t j = 0; j < M; ++j, rec += 6 + 4 * nd) f += rec[0] == kRow ? rows : n;
    return f;
}

template <class T>
void run_fused(const Instr& in) {
    // the active ISA's copy (fuse_kernel.hpp); by name, so no other ISA's code ever runs
    const char* isa = active_kernels().isa;
    const int64_t* i = in.i.data();
    const double* d = in.d.data();
    const std::vector<void*>* lists = in.lists.data();
#if GD_BUILT_AVX512
    if (std::strcmp(isa, "avx512") == 0) return isa_avx512::run_fused_chain<T>(i, d, lists);
#endif
#if GD_BUILT_AVX2
    if (std::strcmp(isa, "avx2") == 0) return isa_avx2::run_fused_chain<T>(i, d, lists);
#endif
#if GD_BUILT_NEON
    if (std::strcmp(isa, "neon") == 0) return isa_neon::run_fused_chain<T>(i, d, lists);
#endif
    isa_baseline::run_fused_chain<T>(i, d, lists);
}

template void run_fused<float>(const Instr&);
template void run_fused<double>(const Instr&);

}  // namespace gd
