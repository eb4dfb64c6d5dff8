// fp64 Comba recurrence and its reverse pass (see oracle.h). Derivation of the reverse
// pass, per sequence and value head, for the step
//   e_t = v_t - S_{t-1}^T p_t,  S_t = a_t S_{t-1} + b_t k_t e_t^T,  o_t = S_t^T (s q_t)
// with a_t = exp(g_t), b_t = beta_t and dS the gradient flowing into S_t from later steps
// (initialised with d_final_state):
//   dS      += s q_t do_t^T                     (o_t reads S_t)
//   dq_t     = s S_t do_t
//   dg_t     = a_t <dS, S_{t-1}>                (d a_t / d g_t = a_t)
//   dbeta_t  = k_t^T dS e_t
//   dk_t     = b_t dS e_t
//   de_t     = b_t dS^T k_t,   dv_t = de_t
//   dp_t     = -S_{t-1} de_t
//   dS_{t-1} = a_t dS - p_t de_t^T              (both uses of S_{t-1})
// and dS_0 is the initial state's gradient. With l2norm, y = x / n, n = sqrt(x.x + eps):
//   dx = (dy - y (y . dy)) / n.
// q, k, p of a query head collect the gradients of every value head of its group.
#include "support/oracle.h"

#include <Eigen/Dense>

#include <cmath>
#include <stdexcept>
#include <string>

namespace comba::test {

namespace {

using Matrix = Eigen::MatrixXd;  // a K x V state
using Vector = Eigen::VectorXd;
using RowMajorMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr double kL2NormEps = 1e-6;  // SPEC section 1

void require_size(const std::vector<double>& x, int64_t expected, const char* name) {
  if (static_cast<int64_t>(x.size()) != expected) {
    throw std::invalid_argument(std::string("oracle: `") + name + "` has " +
                                std::to_string(x.size()) + " elements, expected " +
                                std::to_string(expected));
  }
}

void check_inputs(const OracleProblem& pb, const OracleInputs& in) {
  if (pb.heads <= 0 || pb.value_heads % pb.heads != 0) {
    throw std::invalid_argument("oracle: HV must be a positive multiple of H");
  }
  if (!pb.cu_seqlens.empty()) {
    if (pb.batch != 1 || pb.cu_seqlens.front() != 0 || pb.cu_seqlens.back() != pb.seq_len) {
      throw std::invalid_argument("oracle: cu_seqlens needs B = 1, cu[0] = 0, cu[N] = T");
    }
  }
  require_size(in.q, pb.qk_numel(), "q");
  require_size(in.k, pb.qk_numel(), "k");
  require_size(in.p, pb.qk_numel(), "p");
  require_size(in.v, pb.v_numel(), "v");
  require_size(in.g, pb.gate_numel(), "g");
  require_size(in.beta, pb.gate_numel(), "beta");
  if (!in.initial_state.empty()) require_size(in.initial_state, pb.state_numel(), "initial_state");
}

// One sequence: its index n and the flat token rows [begin, begin + length) of [B * T].
struct Sequence {
  int64_t index;
  int64_t begin;
  int64_t length;
};

std::vector<Sequence> sequences(const OracleProblem& pb) {
  std::vector<Sequence> out;
  if (pb.cu_seqlens.empty()) {
    for (int64_t b = 0; b < pb.batch; ++b) out.push_back({b, b * pb.seq_len, pb.seq_len});
  } else {
    for (size_t n = 0; n + 1 < pb.cu_seqlens.size(); ++n) {
      const int64_t begin = pb.cu_seqlens[n];
      const int64_t length = pb.cu_seqlens[n + 1] - begin;
      if (length < 0) throw std::invalid_argument("oracle: cu_seqlens must be non-decreasing");
      out.push_back({static_cast<int64_t>(n), begin, length});
    }
  }
  return out;
}

// Flat offsets into the row-major layouts of oracle.h.
struct Layout {
  const OracleProblem& pb;
  int64_t qk(int64_t row, int64_t h) const { return (row * pb.heads + h) * pb.key_dim; }
  int64_t v(int64_t row, int64_t j) const { return (row * pb.value_heads + j) * pb.value_dim; }
  int64_t gate(int64_t row, int64_t j) const { return row * pb.value_heads + j; }
  int64_t state(int64_t n, int64_t j) const {
    return (n * pb.value_heads + j) * pb.key_dim * pb.value_dim;
  }
};

Vector load(const std::vector<double>& x, int64_t offset, int64_t size) {
  return Eigen::Map<const Vector>(x.data() + offset, size);
}

void add_to(std::vector<double>& x, int64_t offset, const Vector& value) {
  Eigen::Map<Vector>(x.data() + offset, value.size()) += value;
}

Matrix load_state(const std::vector<double>& x, int64_t offset, int64_t rows, int64_t cols) {
  if (x.empty()) return Matrix::Zero(rows, cols);
  return Eigen::Map<const RowMajorMatrix>(x.data() + offset, rows, cols);
}

void store_state(std::vector<double>& x, int64_t offset, const Matrix& s) {
  Eigen::Map<RowMajorMatrix>(x.data() + offset, s.rows(), s.cols()) = s;
}

// The token's q, k or p as the recurrence sees it (normalised or not).
Vector prepare(const Vector& x, bool l2norm) {
  return l2norm ? Vector(x / std::sqrt(x.squaredNorm() + kL2NormEps)) : x;
}

// Gradient through prepare(): dx from dy.
Vector prepare_backward(const Vector& x, const Vector& dy, bool l2norm) {
  if (!l2norm) return dy;
  const double norm = std::sqrt(x.squaredNorm() + kL2NormEps);
  const Vector y = x / norm;
  return (dy - y * y.dot(dy)) / norm;
}

// The per-token quantities of one (sequence, value head) step, shared by both passes.
struct Step {
  Vector q, k, p, v;  // prepared q, k, p (normalised when l2norm)
  double alpha, beta;
};

Step load_step(const OracleProblem& pb, const OracleInputs& in, const Layout& idx, int64_t row,
               int64_t h, int64_t j) {
  Step s;
  s.q = prepare(load(in.q, idx.qk(row, h), pb.key_dim), pb.l2norm);
  s.k = prepare(load(in.k, idx.qk(row, h), pb.key_dim), pb.l2norm);
  s.p = prepare(load(in.p, idx.qk(row, h), pb.key_dim), pb.l2norm);
  s.v = load(in.v, idx.v(row, j), pb.value_dim);
  s.alpha = std::exp(in.g[idx.gate(row, j)]);
  s.beta = in.beta[idx.gate(row, j)];
  return s;
}

// S_t from S_{t-1}: the correction reads the state before the decay.
Matrix advance(const Matrix& prev, const Step& s) {
  const Vector e = s.v - prev.transpose() * s.p;
  return s.alpha * prev + s.beta * s.k * e.transpose();
}

}  // namespace

int64_t OracleProblem::num_seqs() const {
  return cu_seqlens.empty() ? batch : static_cast<int64_t>(cu_seqlens.size()) - 1;
}

OracleOutputs oracle_forward(const OracleProblem& pb, const OracleInputs& in) {
  check_inputs(pb, in);
  const Layout idx{pb};
  const int64_t group = pb.value_heads / pb.heads;
  OracleOutputs out;
  out.o.assign(pb.v_numel(), 0.0);
  out.final_state.assign(pb.state_numel(), 0.0);
  for (const Sequence& seq : sequences(pb)) {
    for (int64_t j = 0; j < pb.value_heads; ++j) {
      const int64_t h = j / group;
      Matrix state = load_state(in.initial_state, idx.state(seq.index, j), pb.key_dim,
                                pb.value_dim);
      for (int64_t t = 0; t < seq.length; ++t) {
        const int64_t row = seq.begin + t;
        const Step s = load_step(pb, in, idx, row, h, j);
        state = advance(state, s);
        const Vector o = state.transpose() * (pb.scale * s.q);
        Eigen::Map<Vector>(out.o.data() + idx.v(row, j), pb.value_dim) = o;
      }
      store_state(out.final_state, idx.state(seq.index, j), state);
    }
  }
  return out;
}

OracleGrads oracle_backward(const OracleProblem& pb, const OracleInputs& in,
                            const std::vector<double>& d_o,
                            const std::vector<double>& d_final_state) {
  check_inputs(pb, in);
  require_size(d_o, pb.v_numel(), "d_o");
  if (!d_final_state.empty()) require_size(d_final_state, pb.state_numel(), "d_final_state");
  const Layout idx{pb};
  const int64_t group = pb.value_heads / pb.heads;

  OracleGrads grads;
  grads.q.assign(pb.qk_numel(), 0.0);
  grads.k.assign(pb.qk_numel(), 0.0);
  grads.p.assign(pb.qk_numel(), 0.0);
  grads.v.assign(pb.v_numel(), 0.0);
  grads.g.assign(pb.gate_numel(), 0.0);
  grads.beta.assign(pb.gate_numel(), 0.0);
  grads.initial_state.assign(pb.state_numel(), 0.0);

  for (const Sequence& seq : sequences(pb)) {
    for (int64_t j = 0; j < pb.value_heads; ++j) {
      const int64_t h = j / group;
      // Forward again, keeping every state: states[t] = S_t, states[0] = S_0.
      std::vector<Step> steps;
      std::vector<Matrix> states{
          load_state(in.initial_state, idx.state(seq.index, j), pb.key_dim, pb.value_dim)};
      for (int64_t t = 0; t < seq.length; ++t) {
        steps.push_back(load_step(pb, in, idx, seq.begin + t, h, j));
        states.push_back(advance(states.back(), steps.back()));
      }

      Matrix d_state = load_state(d_final_state, idx.state(seq.index, j), pb.key_dim,
                                  pb.value_dim);
      for (int64_t t = seq.length - 1; t >= 0; --t) {
        const int64_t row = seq.begin + t;
        const Step& s = steps[t];
        const Matrix& prev = states[t];
        const Vector d_out = load(d_o, idx.v(row, j), pb.value_dim);

        const Vector dq = pb.scale * (states[t + 1] * d_out);
        d_state += pb.scale * s.q * d_out.transpose();

        const Vector e = s.v - prev.transpose() * s.p;
        const Vector de = s.beta * (d_state.transpose() * s.k);
        const Vector dk = s.beta * (d_state * e);
        const Vector dp = -(prev * de);
        grads.g[idx.gate(row, j)] = s.alpha * d_state.cwiseProduct(prev).sum();
        grads.beta[idx.gate(row, j)] = s.k.dot(d_state * e);
        add_to(grads.v, idx.v(row, j), de);

        const int64_t qk = idx.qk(row, h);
        add_to(grads.q, qk, prepare_backward(load(in.q, qk, pb.key_dim), dq, pb.l2norm));
        add_to(grads.k, qk, prepare_backward(load(in.k, qk, pb.key_dim), dk, pb.l2norm));
        add_to(grads.p, qk, prepare_backward(load(in.p, qk, pb.key_dim), dp, pb.l2norm));

        d_state = s.alpha * d_state - s.p * de.transpose();
      }
      store_state(grads.initial_state, idx.state(seq.index, j), d_state);
    }
  }
  return grads;
}

}  // namespace comba::test
