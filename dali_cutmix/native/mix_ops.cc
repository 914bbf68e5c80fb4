// dali-cutmix native operators for NVIDIA DALI (CPU backend).
//
// DaliCutmixParams: draws every per-sample mixing parameter of a batch in one pass and builds the soft labels.
//   Its randomness comes in through an input (one seed per sample from a DALI random operator), so the pipeline
//   seed, per-rank seeds and DALI checkpointing cover it, and the operator is stateless. Its outputs are named:
//   the caller lists the ones it wants in `outputs` and gets them in that order (see kOutputNames).
// DaliCutmixApply: writes the mixed images of a CPU batch in one pass over the pixels: the sample's own image
//   with the partner's box pasted on top (CutMix), or the rounded blend lam * own + (1 - lam) * partner (MixUp).
// DaliCutmixMixNormalize: the CPU training pipeline's last two steps in one pass: the mixed image of
//   DaliCutmixApply, flipped and normalized into float32 or float16, CHW or HWC, exactly as DALI's CPU
//   crop_mirror_normalize writes it (its arithmetic, once per possible pixel value, in a table).
// On the GPU, dali_cutmix/stage.py feeds DaliCutmixParams' outputs to DALI's own GPU operators instead.
//
// The options, their defaults and their ranges are defined and checked once, in dali_cutmix/options.py
// (MixOptions); the arguments here carry the same names and no defaults. The semantics are those of
// ../shared/design.md; tests/reference.py is the NumPy reference the tests compare against.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "dali/core/convert.h"
#include "dali/core/float16.h"
#include "dali/core/static_switch.h"
#include "dali/pipeline/data/views.h"
#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "dali/pipeline/operator/operator.h"

namespace dali_cutmix {

using dali::CPUBackend;
using dali::OpSpec;
using dali::OutputDesc;
using dali::TensorListShape;
using dali::TensorShape;
using dali::Workspace;

enum Method : int32_t { kNone = 0, kCutMix = 1, kMixUp = 2 };
enum class Mode { kBatch, kElem, kPair };

// The outputs DaliCutmixParams can produce, by name.
enum class Output { kTargets, kPerm, kBox, kLam, kMethod, kInIds, kAnchors, kRegions, kBlend };
constexpr std::array<const char *, 9> kOutputNames = {
    "targets", "perm", "box", "lam", "method", "in_ids", "anchors", "regions", "blend"};

constexpr std::array<const char *, 3> kModeNames = {"batch", "elem", "pair"};  // the order of Mode

// The position of `name` in `names`; fails naming `what` and the known names otherwise.
template <size_t N>
int IndexOf(const std::array<const char *, N> &names, const std::string &name, const char *what) {
  for (size_t k = 0; k < N; k++)
    if (name == names[k]) return static_cast<int>(k);
  std::string known;
  for (const char *n : names) known += std::string(known.empty() ? "" : ", ") + n;
  DALI_FAIL("DaliCutmixParams: unknown " + std::string(what) + " '" + name + "'; known: " + known);
}

// The messages of errors a user can cause (bad labels, gate or images) start with kUserMark, so that
// dali_cutmix.loader.CutMixLoader can re-raise them as one line (dali_cutmix/loader.py, stage_error).
constexpr const char *kUserMark = "[dali-cutmix] ";

[[noreturn]] inline void UserFail(const std::string &message) { DALI_FAIL(kUserMark + message); }

// "(3, 40, 56)"
inline std::string ShapeText(const std::vector<int64_t> &s) {
  std::string text = "(";
  for (size_t k = 0; k < s.size(); k++) text += (k ? ", " : "") + std::to_string(s[k]);
  return text + (s.size() == 1 ? ",)" : ")");
}

// Fails unless `shape` is HWC with 1 to 4 channels; a CHW-looking shape is called that.
inline void CheckHWC(const std::vector<int64_t> &shape) {
  if (shape.size() != 3)
    UserFail("images reaching the cutmix stage must be HWC (3 dimensions), got shape " + ShapeText(shape));
  if (shape[2] < 1 || shape[2] > 4) {
    UserFail("images reaching the cutmix stage must be HWC with 1 to 4 channels, got shape " + ShapeText(shape) +
             (shape[0] >= 1 && shape[0] <= 4 ? ": they look channels-first (CHW)" : "") +
             "; mix them before transposing or normalizing them");
  }
}

struct MixOptions {
  int num_classes = 1;
  float cutmix_alpha = 1.f, mixup_alpha = 0.f, switch_prob = 0.5f, prob = 1.f, label_smoothing = 0.f;
  bool correct_lam = true;
  bool self_pairs = true;  // false: a sample's partner is never itself (a random derangement)
  bool use_minmax = false;
  float lo = 0.f, hi = 1.f;
  Mode mode = Mode::kBatch;
};

struct Draw {
  int32_t method = kNone;
  float lam = 1.f;
  int32_t box[4] = {0, 0, 0, 0};  // y0, x0, y1, x1, half-open
};

// Whether the draw pastes any pixel of the partner (CutMix with a box of non-zero size).
inline bool Pasted(const Draw &d) { return d.method == kCutMix && d.box[2] > d.box[0] && d.box[3] > d.box[1]; }

class MixSampler {
 public:
  MixSampler(const MixOptions &o, std::mt19937 &rng, int64_t height, int64_t width)
      : o_(o), rng_(rng), h_(height), w_(width) {}

  double Uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  int64_t RandInt(int64_t lo, int64_t hi) {  // inclusive bounds
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

  double Beta(double alpha) {
    std::gamma_distribution<double> gamma(alpha, 1.0);
    double x = gamma(rng_), y = gamma(rng_);
    if (x + y <= 0) return Uniform() < 0.5 ? 0.0 : 1.0;
    return x / (x + y);
  }

  // One coin flip, method choice, lam and box.
  Draw Sample() {
    Draw d;
    if (!(Uniform() < o_.prob)) return d;
    bool cutmix_on = o_.cutmix_alpha > 0 || o_.use_minmax;
    bool mixup_on = o_.mixup_alpha > 0;
    bool use_cutmix = cutmix_on && (!mixup_on || Uniform() < o_.switch_prob);
    if (!use_cutmix) {
      d.method = kMixUp;
      d.lam = static_cast<float>(Beta(o_.mixup_alpha));
      return d;
    }
    d.method = kCutMix;
    int64_t y0, x0, y1, x1;
    double lam = 0;
    if (o_.use_minmax) {
      int64_t ch = RandInt(static_cast<int64_t>(h_ * o_.lo), static_cast<int64_t>(h_ * o_.hi));
      int64_t cw = RandInt(static_cast<int64_t>(w_ * o_.lo), static_cast<int64_t>(w_ * o_.hi));
      y0 = RandInt(0, h_ - ch);
      x0 = RandInt(0, w_ - cw);
      y1 = y0 + ch;
      x1 = x0 + cw;
    } else {
      lam = Beta(o_.cutmix_alpha);
      double ratio = std::sqrt(1.0 - lam);
      int64_t ch = static_cast<int64_t>(h_ * ratio), cw = static_cast<int64_t>(w_ * ratio);
      int64_t cy = RandInt(0, h_ - 1), cx = RandInt(0, w_ - 1);
      y0 = std::clamp<int64_t>(cy - ch / 2, 0, h_);
      y1 = std::clamp<int64_t>(cy + ch / 2, 0, h_);
      x0 = std::clamp<int64_t>(cx - cw / 2, 0, w_);
      x1 = std::clamp<int64_t>(cx + cw / 2, 0, w_);
    }
    if (o_.correct_lam || o_.use_minmax)
      lam = 1.0 - static_cast<double>((y1 - y0) * (x1 - x0)) / static_cast<double>(h_ * w_);
    d.lam = static_cast<float>(lam);
    d.box[0] = y0; d.box[1] = x0; d.box[2] = y1; d.box[3] = x1;
    return d;
  }

  std::vector<int32_t> Permutation(int n) {
    std::vector<int32_t> p(n);
    std::iota(p.begin(), p.end(), 0);
    for (int i = n - 1; i > 0; i--) std::swap(p[i], p[RandInt(0, i)]);
    return p;
  }

  // A uniformly random permutation of n >= 2 without a fixed point: permutations drawn until one has none
  // (about e tries on average).
  std::vector<int32_t> Derangement(int n) {
    for (;;) {
      std::vector<int32_t> p = Permutation(n);
      bool fixed = false;
      for (int i = 0; i < n && !fixed; i++) fixed = p[i] == i;
      if (!fixed) return p;
    }
  }

 private:
  const MixOptions &o_;
  std::mt19937 &rng_;
  int64_t h_, w_;
};

// Parameters of n samples: partner (an index in [0, n)) and draw per sample.
void DrawBatch(const MixOptions &o, std::mt19937 &rng, int n, int64_t h, int64_t w,
               std::vector<int32_t> &perm, std::vector<Draw> &draws) {
  MixSampler s(o, rng, h, w);
  draws.assign(n, Draw{});
  perm.assign(n, 0);
  if (n == 0) return;
  if (!o.self_pairs && o.mode != Mode::kPair && n < 2) {  // nobody else to mix with: left unmixed
    std::iota(perm.begin(), perm.end(), 0);
    return;
  }
  std::vector<int32_t> order = !o.self_pairs && o.mode != Mode::kPair ? s.Derangement(n) : s.Permutation(n);
  if (o.mode == Mode::kPair) {
    for (int k = 0; k + 1 < n; k += 2) {
      int a = order[k], b = order[k + 1];
      perm[a] = b;
      perm[b] = a;
      draws[a] = draws[b] = s.Sample();
    }
    if (n % 2) perm[order[n - 1]] = order[n - 1];  // the odd one out keeps its own image
    return;
  }
  perm = order;
  if (o.mode == Mode::kBatch) {
    Draw d = s.Sample();
    std::fill(draws.begin(), draws.end(), d);
  } else {
    for (auto &d : draws) d = s.Sample();
  }
}

// Sample i of an integer input as int64 values, whatever its integer type.
// NumPy's name of a DALI type ("float32" for DALI_FLOAT).
inline std::string DtypeName(dali::DALIDataType type) {
  switch (type) {
    case DALI_FLOAT: return "float32";
    case DALI_FLOAT64: return "float64";
    case DALI_FLOAT16: return "float16";
    default: return dali::GetBuiltinTypeName(type);
  }
}

// A type that is not an integer fails naming `what` and the type (a user's error: labels or gate of floats).
std::vector<int64_t> ReadInts(const dali::TensorList<CPUBackend> &tl, int i, const char *what) {
  std::vector<int64_t> v(tl.tensor_shape(i).num_elements());
  TYPE_SWITCH(tl.type(), dali::type2id, T, (int32_t, int64_t, uint32_t, uint64_t, int16_t, uint16_t, int8_t,
                                            uint8_t), (
      const T *data = tl.tensor<T>(i);
      std::copy_n(data, v.size(), v.begin());
  ), (  // NOLINT
      UserFail(std::string(what) + " must be integers, got dtype " + DtypeName(tl.type()) +
               " (cast them, e.g. fn.cast(x, dtype=types.INT32))");
  ));  // NOLINT
  return v;
}

class DaliCutmixParams : public dali::StatelessOperator<CPUBackend> {
 public:
  explicit DaliCutmixParams(const OpSpec &spec) : dali::StatelessOperator<CPUBackend>(spec) {
    o_.num_classes = spec.GetArgument<int>("num_classes");
    o_.cutmix_alpha = spec.GetArgument<float>("cutmix_alpha");
    o_.mixup_alpha = spec.GetArgument<float>("mixup_alpha");
    o_.switch_prob = spec.GetArgument<float>("switch_prob");
    o_.prob = spec.GetArgument<float>("prob");
    o_.label_smoothing = spec.GetArgument<float>("label_smoothing");
    o_.correct_lam = spec.GetArgument<bool>("correct_lam");
    o_.self_pairs = spec.GetArgument<bool>("self_pairs");
    auto minmax = spec.GetRepeatedArgument<float>("cutmix_minmax");
    if (minmax.size() == 2) {
      o_.use_minmax = true;
      o_.lo = minmax[0];
      o_.hi = minmax[1];
    }
    o_.mode = static_cast<Mode>(IndexOf(kModeNames, spec.GetArgument<std::string>("mode"), "mode"));
    for (const auto &name : spec.GetRepeatedArgument<std::string>("outputs"))
      outputs_.push_back(static_cast<Output>(IndexOf(kOutputNames, name, "output")));
  }

 protected:
  bool SetupImpl(std::vector<OutputDesc> &out, const Workspace &ws) override {
    int n = ws.GetInputBatchSize(0);
    out.resize(outputs_.size());
    for (size_t k = 0; k < outputs_.size(); k++) {
      switch (outputs_[k]) {
        case Output::kTargets: out[k] = {Uniform(n, {o_.num_classes}), DALI_FLOAT}; break;
        case Output::kPerm:    out[k] = {Uniform(n, {}), DALI_INT32}; break;
        case Output::kBox:     out[k] = {Uniform(n, {4}), DALI_INT32}; break;
        case Output::kLam:     out[k] = {Uniform(n, {}), DALI_FLOAT}; break;
        case Output::kMethod:  out[k] = {Uniform(n, {}), DALI_INT32}; break;
        case Output::kInIds:   out[k] = {Uniform(n, {2}), DALI_INT32}; break;
        case Output::kAnchors: out[k] = {Uniform(n, {2, 2}), DALI_INT32}; break;
        case Output::kRegions: out[k] = {Uniform(n, {2, 2}), DALI_INT32}; break;
        case Output::kBlend: {
          const int64_t c = Channels(ws);
          out[k] = {Uniform(n, {c, 2 * c}), DALI_FLOAT};
          break;
        }
      }
    }
    return true;
  }

  void RunImpl(Workspace &ws) override {
    const auto &seeds = ws.Input<CPUBackend>(0);
    const auto &labels = ws.Input<CPUBackend>(1);
    const auto &shapes = ws.Input<CPUBackend>(2);
    int n = seeds.num_samples();
    DALI_ENFORCE(labels.num_samples() == n && shapes.num_samples() == n, "batch sizes of inputs differ");

    std::vector<int64_t> hwc;
    for (int i = 0; i < n; i++) {
      std::vector<int64_t> s = ReadInts(shapes, i, "image shapes");
      if (i == 0) {
        CheckHWC(s);
        hwc = s;
      } else if (s != hwc) {
        UserFail("images reaching the cutmix stage must all have one size (resize or crop them first); "
                 "got shapes " + ShapeText(hwc) + " and " + ShapeText(s));
      }
    }
    std::vector<int64_t> y(n);
    for (int i = 0; i < n; i++) {
      std::vector<int64_t> v = ReadInts(labels, i, "labels");
      if (v.size() != 1)
        UserFail("labels reaching the cutmix stage must hold exactly one class id per sample, got " +
                 std::to_string(v.size()));
      y[i] = v[0];
      if (y[i] < 0 || y[i] >= o_.num_classes)
        UserFail("labels must be in [0, num_classes=" + std::to_string(o_.num_classes) + "), got " +
                 std::to_string(y[i]));
    }
    // The gate: 1 mix, 0 a sample left unmixed, -1 padding (not a sample: never a partner, never mixed).
    std::vector<int64_t> gate(n, 1);
    if (ws.NumInput() > 3) {
      const auto &g = ws.Input<CPUBackend>(3);
      DALI_ENFORCE(g.num_samples() == n, "the mixing gate must have one value per sample");
      for (int i = 0; i < n; i++) {
        std::vector<int64_t> v = ReadInts(g, i, "the mixing gate's values");
        if (v.size() != 1 || v[0] < -1 || v[0] > 1)
          UserFail("the mixing gate must be one value per sample, 1 (mix), 0 (do not mix) or -1 (padding), got " +
                   (v.size() == 1 ? std::to_string(v[0]) : std::to_string(v.size()) + " values"));
        gate[i] = v[0];
      }
    }
    std::vector<int32_t> real;  // the samples, in batch order; the rest is padding
    for (int i = 0; i < n; i++)
      if (gate[i] >= 0) real.push_back(i);

    std::vector<uint32_t> seed_words(n);
    for (int i = 0; i < n; i++) seed_words[i] = static_cast<uint32_t>(ReadInts(seeds, i, "seeds").at(0));
    std::seed_seq seq(seed_words.begin(), seed_words.end());
    std::mt19937 rng(seq);

    int64_t h = n ? hwc[0] : 0, w = n ? hwc[1] : 0, c = n ? hwc[2] : 1;
    const int m = static_cast<int>(real.size());
    std::vector<int32_t> sub_perm;
    std::vector<Draw> sub_draws;
    DrawBatch(o_, rng, m, h, w, sub_perm, sub_draws);  // over the real samples only
    std::vector<int32_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);  // padding: its own partner, not mixed
    std::vector<Draw> draws(n);
    for (int k = 0; k < m; k++) {
      perm[real[k]] = real[sub_perm[k]];
      draws[real[k]] = sub_draws[k];
    }
    for (int i = 0; i < n; i++) {  // a gate of 0 leaves the sample (and, in pair mode, its partner) unmixed
      if (gate[i] == 0) {
        draws[i] = Draw{};
        if (o_.mode == Mode::kPair) draws[perm[i]] = Draw{};
      }
    }

    for (size_t k = 0; k < outputs_.size(); k++) {
      auto &out = ws.Output<CPUBackend>(k);
      for (int i = 0; i < n; i++) WriteOutput(outputs_[k], out, i, perm, draws[i], y, h, w, c);
    }
  }

 private:
  static TensorListShape<> Uniform(int n, TensorShape<> sample) { return dali::uniform_list_shape(n, sample); }

  // The images' channel count, from the first sample's shape (1 when there is none or it is not HWC with 1 to 4
  // channels: RunImpl then fails with the message that names the shape).
  static int64_t Channels(const Workspace &ws) {
    const auto &shapes = ws.Input<CPUBackend>(2);
    if (shapes.num_samples() == 0) return 1;
    std::vector<int64_t> s = ReadInts(shapes, 0, "image shapes");
    return s.size() == 3 && s[2] >= 1 && s[2] <= 4 ? s[2] : 1;
  }

  void WriteOutput(Output what, dali::TensorList<CPUBackend> &out, int i, const std::vector<int32_t> &perm,
                   const Draw &d, const std::vector<int64_t> &y, int64_t h, int64_t w, int64_t c) const {
    switch (what) {
      case Output::kTargets: {  // timm: smoothed one-hots, then mixed
        const float off = o_.label_smoothing / o_.num_classes, on_minus_off = 1.f - o_.label_smoothing;
        float *t = out.mutable_tensor<float>(i);
        std::fill(t, t + o_.num_classes, off);
        t[y[i]] += d.lam * on_minus_off;
        t[y[perm[i]]] += (1.f - d.lam) * on_minus_off;
        break;
      }
      case Output::kPerm: *out.mutable_tensor<int32_t>(i) = perm[i]; break;
      case Output::kBox: std::copy(d.box, d.box + 4, out.mutable_tensor<int32_t>(i)); break;
      case Output::kLam: *out.mutable_tensor<float>(i) = d.lam; break;
      case Output::kMethod: *out.mutable_tensor<int32_t>(i) = d.method; break;
      // multi_paste's two regions: 0 = the sample's own image; 1 = the partner's box or, when nothing is pasted,
      // the own image again. Never a region of size 0: DALI's GPU multi_paste never closes one, so it would win
      // every later patch (dali/kernels/imgproc/paste/paste_gpu.h, CreateSampleDescriptors; DALI 2.4).
      case Output::kInIds: {
        int32_t *ids = out.mutable_tensor<int32_t>(i);
        ids[0] = i;
        ids[1] = Pasted(d) ? perm[i] : i;
        break;
      }
      case Output::kAnchors: {  // [[0, 0], [y0, x0] or [0, 0]]
        int32_t *a = out.mutable_tensor<int32_t>(i);
        a[0] = a[1] = 0;
        a[2] = Pasted(d) ? d.box[0] : 0;
        a[3] = Pasted(d) ? d.box[1] : 0;
        break;
      }
      case Output::kRegions: {  // [[H, W], [box height, box width] or [H, W]]
        int32_t *r = out.mutable_tensor<int32_t>(i);
        r[0] = static_cast<int32_t>(h);
        r[1] = static_cast<int32_t>(w);
        r[2] = Pasted(d) ? d.box[2] - d.box[0] : static_cast<int32_t>(h);
        r[3] = Pasted(d) ? d.box[3] - d.box[1] : static_cast<int32_t>(w);
        break;
      }
      // coord_transform's M for the blend of [own | partner] channels: [a*I | (1 - a)*I], a = lam for MixUp, else 1
      // (then the partner's weight is exactly 0 and the own pixels pass unchanged).
      case Output::kBlend: {
        const float a = d.method == kMixUp ? d.lam : 1.f, b = 1.f - a;
        float *m = out.mutable_tensor<float>(i);
        std::fill(m, m + 2 * c * c, 0.f);
        for (int64_t r = 0; r < c; r++) {
          m[r * 2 * c + r] = a;
          m[r * 2 * c + c + r] = b;
        }
        break;
      }
    }
  }

  MixOptions o_;
  std::vector<Output> outputs_;
};

// One output image: a copy of `own` with `partner`'s box on top (CutMix), or the blend (MixUp).
template <typename T>
void MixSample(dali::TensorView<dali::StorageCPU, const T, 3> own,
               dali::TensorView<dali::StorageCPU, const T, 3> partner,
               dali::TensorView<dali::StorageCPU, T, 3> out, int32_t method, float lam, const int32_t *box) {
  const int64_t h = own.shape[0], w = own.shape[1], c = own.shape[2], total = h * w * c;
  if (method == kMixUp) {
    const float a = lam, b = 1.f - lam;
    if constexpr (std::is_integral_v<T>) {
      // Round half away from zero; the blend of two in-range values stays in range, so only negative types
      // need the sign. Written so that the compiler vectorizes it.
      for (int64_t k = 0; k < total; k++) {
        float v = a * static_cast<float>(own.data[k]) + b * static_cast<float>(partner.data[k]);
        out.data[k] = static_cast<T>(v + (v < 0 ? -0.5f : 0.5f));
      }
    } else {
      for (int64_t k = 0; k < total; k++) out.data[k] = static_cast<T>(a * own.data[k] + b * partner.data[k]);
    }
    return;
  }
  if (method != kCutMix || box[2] <= box[0] || box[3] <= box[1]) {  // nothing pasted
    std::memcpy(out.data, own.data, total * sizeof(T));
    return;
  }
  // Every output pixel is written once, from its source: the rows above and below the box from the own image,
  // each box row as own | partner | own. (Copying the whole own image first and the box on top of it wrote the
  // box's pixels twice: ~1.45 copies of the batch instead of 1 for lam ~ 0.55.)
  const int64_t row = w * c, left = box[1] * c, right = box[3] * c;
  std::memcpy(out.data, own.data, box[0] * row * sizeof(T));
  for (int64_t y = box[0]; y < box[2]; y++) {
    const int64_t at = y * row;
    std::memcpy(out.data + at, own.data + at, left * sizeof(T));
    std::memcpy(out.data + at + left, partner.data + at + left, (right - left) * sizeof(T));
    std::memcpy(out.data + at + right, own.data + at + right, (row - right) * sizeof(T));
  }
  std::memcpy(out.data + box[2] * row, own.data + box[2] * row, (h - box[2]) * row * sizeof(T));
}

// What both mixing operators check of their images: an HWC layout (or none), HWC shapes with 1 to 4 channels
// and, with `perm`, each sample's partner in range and of its size.
inline void CheckMixInputs(const dali::TensorList<CPUBackend> &images, const dali::TensorList<CPUBackend> *perm) {
  const int n = images.num_samples();
  const std::string layout = images.GetLayout().str();
  if (!layout.empty() && layout != "HWC") {
    UserFail("images reaching the cutmix stage must be HWC, got layout " + layout +
             (layout[0] == 'C' ? ": they are channels-first" : "") +
             "; mix them before transposing or normalizing them");
  }
  for (int i = 0; i < n; i++) {
    auto s = images.tensor_shape(i);
    CheckHWC(std::vector<int64_t>(s.begin(), s.end()));
  }
  if (perm == nullptr) return;
  for (int i = 0; i < n; i++) {
    int32_t j = *perm->tensor<int32_t>(i);
    DALI_ENFORCE(j >= 0 && j < n, "partner index out of range");
    if (images.tensor_shape(i) != images.tensor_shape(j))
      UserFail("images reaching the cutmix stage must all have one size (resize or crop them first)");
  }
}

class DaliCutmixApply : public dali::StatelessOperator<CPUBackend> {
 public:
  explicit DaliCutmixApply(const OpSpec &spec) : dali::StatelessOperator<CPUBackend>(spec) {}

 protected:
  bool SetupImpl(std::vector<OutputDesc> &out, const Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    out.resize(1);
    out[0] = {images.shape(), images.type()};
    return true;
  }

  void RunImpl(Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    const auto &perm = ws.Input<CPUBackend>(1);
    const auto &box = ws.Input<CPUBackend>(2);
    const auto &method = ws.Input<CPUBackend>(3);
    const auto &lam = ws.Input<CPUBackend>(4);
    auto &out = ws.Output<CPUBackend>(0);
    out.SetLayout(images.GetLayout());
    const int n = images.num_samples();
    CheckMixInputs(images, &perm);
    auto &tp = ws.GetThreadPool();
    TYPE_SWITCH(images.type(), dali::type2id, T, (uint8_t, int16_t, float), (
        // The views outlive the tasks (RunAll returns when they are done), so the tasks take them by
        // reference: a copy per task is two heap-allocated vectors of the batch's pointers and shapes.
        const auto in_view = dali::view<const T, 3>(images);
        const auto out_view = dali::view<T, 3>(out);
        for (int i = 0; i < n; i++) {
          tp.AddWork([&, i](int) {
            const int32_t j = *perm.tensor<int32_t>(i);
            MixSample<T>(in_view[i], in_view[j], out_view[i], *method.tensor<int32_t>(i), *lam.tensor<float>(i),
                         box.tensor<int32_t>(i));
          }, images.tensor_shape(i).num_elements());
        }
        tp.RunAll();
    ), (  // NOLINT
        DALI_FAIL("cutmix on the CPU supports uint8, int16 and float32 images, got " +
                  std::string(dali::GetBuiltinTypeName(images.type())));
    ));  // NOLINT
  }
};

// One output image of DaliCutmixColorMap: out = M x + T + K * (g . mean(x)) per pixel, x the (mirrored) uint8
// pixel, in float32; mean(x) the image's per-channel mean (a first pass, skipped when K is zero).
inline void ColorMapSample(const uint8_t *in, float *out, int64_t h, int64_t w, const float *m, const float *t,
                           const float *k, const std::array<float, 3> &g, bool mirror) {
  float offset[3] = {t[0], t[1], t[2]};
  if (k[0] != 0.f || k[1] != 0.f || k[2] != 0.f) {
    double sum[3] = {0, 0, 0};
    for (int64_t y = 0; y < h; y++) {
      uint64_t row[3] = {0, 0, 0};  // exact integer sums per row
      const uint8_t *px = in + y * w * 3;
      for (int64_t x = 0; x < w; x++) {
        row[0] += px[3 * x];
        row[1] += px[3 * x + 1];
        row[2] += px[3 * x + 2];
      }
      for (int c = 0; c < 3; c++) sum[c] += static_cast<double>(row[c]);
    }
    const double n = static_cast<double>(h * w);
    const double gray = (g[0] * sum[0] + g[1] * sum[1] + g[2] * sum[2]) / n;
    for (int c = 0; c < 3; c++) offset[c] += static_cast<float>(k[c] * gray);
  }
  const float m00 = m[0], m01 = m[1], m02 = m[2], m10 = m[3], m11 = m[4], m12 = m[5], m20 = m[6], m21 = m[7],
              m22 = m[8], t0 = offset[0], t1 = offset[1], t2 = offset[2];
  for (int64_t y = 0; y < h; y++) {
    const uint8_t *src = in + y * w * 3;
    float *dst = out + y * w * 3;
    for (int64_t x = 0; x < w; x++) {
      const uint8_t *p = src + 3 * (mirror ? w - 1 - x : x);
      const float r = p[0], gg = p[1], b = p[2];
      dst[3 * x] = m00 * r + m01 * gg + m02 * b + t0;
      dst[3 * x + 1] = m10 * r + m11 * gg + m12 * b + t1;
      dst[3 * x + 2] = m20 * r + m21 * gg + m22 * b + t2;
    }
  }
}

class DaliCutmixColorMap : public dali::StatelessOperator<CPUBackend> {
 public:
  explicit DaliCutmixColorMap(const OpSpec &spec) : dali::StatelessOperator<CPUBackend>(spec) {
    auto g = spec.GetRepeatedArgument<float>("gray_weights");
    DALI_ENFORCE(g.size() == 3, "gray_weights must hold 3 values");
    std::copy(g.begin(), g.end(), g_.begin());
  }

 protected:
  bool SetupImpl(std::vector<OutputDesc> &out, const Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    DALI_ENFORCE(images.type() == DALI_UINT8, "the colour map takes uint8 images");
    for (int i = 0; i < images.num_samples(); i++) {
      auto s = images.tensor_shape(i);
      DALI_ENFORCE(s.size() == 3 && s[2] == 3, "the colour map takes HWC images with 3 channels");
    }
    out.resize(1);
    out[0] = {images.shape(), DALI_FLOAT};
    return true;
  }

  void RunImpl(Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    const auto &matrix = ws.Input<CPUBackend>(1);
    const auto &offset = ws.Input<CPUBackend>(2);
    const auto &mean_weight = ws.Input<CPUBackend>(3);
    const auto &mirror = ws.Input<CPUBackend>(4);
    auto &out = ws.Output<CPUBackend>(0);
    out.SetLayout(images.GetLayout());
    auto &tp = ws.GetThreadPool();
    for (int i = 0; i < images.num_samples(); i++) {
      tp.AddWork([&, i](int) {
        auto s = images.tensor_shape(i);
        ColorMapSample(images.tensor<uint8_t>(i), out.mutable_tensor<float>(i), s[0], s[1],
                       matrix.tensor<float>(i), offset.tensor<float>(i), mean_weight.tensor<float>(i), g_,
                       *mirror.tensor<int32_t>(i) != 0);
      }, images.tensor_shape(i).num_elements());
    }
    tp.RunAll();
  }

 private:
  std::array<float, 3> g_{};
};

// DaliCutmixMixNormalize's per-channel table: the value crop_mirror_normalize's CPU kernel writes for each uint8
// pixel value v of channel c, ConvertSat<Out>((float(v) - mean[c]) * inv_std[c])
// (dali/kernels/slice/slice_flip_normalize_permute_pad_cpu.h, slice_impl::Fill), with its mean and inv_std
// (dali/operators/image/crop/crop_mirror_normalize.h, ProcessNormArgs, at shift 0 and scale 1).
template <typename Out>
std::vector<Out> NormalizeTable(const std::vector<float> &mean, const std::vector<float> &stddev) {
  const int c = static_cast<int>(mean.size());
  std::vector<Out> table(256 * c);
  for (int k = 0; k < c; k++) {
    const double mean_val = mean[k], std_val = stddev[k];
    const float m = static_cast<float>(std::fma(-0.0, std_val / 1.0, mean_val));
    const float inv_std = static_cast<float>(1.0 / std_val);
    for (int v = 0; v < 256; v++) {
      float fpout = (static_cast<float>(v) - m) * inv_std;
      table[k * 256 + v] = dali::ConvertSat<Out>(fpout);
    }
  }
  return table;
}

// One row of uint8 HWC pixels (w x c) through the table into the output: channel planes (`planar`, plane stride
// `plane`) or interleaved; read right to left with `mirror`.
template <typename Out>
inline void NormalizeRow(const uint8_t *row, Out *dst, int64_t w, int c, bool mirror, bool planar, int64_t plane,
                         const Out *table) {
  if (planar && c == 3) {
    Out *d0 = dst, *d1 = dst + plane, *d2 = dst + 2 * plane;
    const Out *t0 = table, *t1 = table + 256, *t2 = table + 512;
    if (mirror) {
      for (int64_t x = 0; x < w; x++) {
        const uint8_t *p = row + 3 * (w - 1 - x);
        d0[x] = t0[p[0]];
        d1[x] = t1[p[1]];
        d2[x] = t2[p[2]];
      }
    } else {
      for (int64_t x = 0; x < w; x++) {
        const uint8_t *p = row + 3 * x;
        d0[x] = t0[p[0]];
        d1[x] = t1[p[1]];
        d2[x] = t2[p[2]];
      }
    }
    return;
  }
  if (c == 3) {  // interleaved
    const Out *t0 = table, *t1 = table + 256, *t2 = table + 512;
    if (mirror) {
      for (int64_t x = 0; x < w; x++) {
        const uint8_t *p = row + 3 * (w - 1 - x);
        dst[3 * x] = t0[p[0]];
        dst[3 * x + 1] = t1[p[1]];
        dst[3 * x + 2] = t2[p[2]];
      }
    } else {
      for (int64_t x = 0; x < 3 * w; x += 3) {
        dst[x] = t0[row[x]];
        dst[x + 1] = t1[row[x + 1]];
        dst[x + 2] = t2[row[x + 2]];
      }
    }
    return;
  }
  for (int64_t x = 0; x < w; x++) {
    const uint8_t *p = row + c * (mirror ? w - 1 - x : x);
    for (int k = 0; k < c; k++) {
      if (planar)
        dst[k * plane + x] = table[k * 256 + p[k]];
      else
        dst[x * c + k] = table[k * 256 + p[k]];
    }
  }
}

// One output image of DaliCutmixMixNormalize: MixSample's image (the own one, the partner's box pasted, or the
// MixUp blend), flipped with `mirror`, through the table, written once. `scratch`: room for one image (MixUp).
template <typename Out>
void MixNormalizeSample(dali::TensorView<dali::StorageCPU, const uint8_t, 3> own,
                        dali::TensorView<dali::StorageCPU, const uint8_t, 3> partner, Out *out, int32_t method,
                        float lam, const int32_t *box, bool mirror, bool planar, const Out *table,
                        std::vector<uint8_t> &scratch) {
  const int64_t h = own.shape[0], w = own.shape[1], c = own.shape[2], row = w * c;
  const int64_t plane = h * w, row_step = planar ? w : row;
  const uint8_t *image = own.data;
  if (method == kMixUp) {  // the blend exactly as DaliCutmixApply rounds it, then normalized
    scratch.resize(h * row);
    dali::TensorView<dali::StorageCPU, uint8_t, 3> blend(scratch.data(), own.shape);
    MixSample<uint8_t>(own, partner, blend, method, lam, box);
    image = scratch.data();
  }
  const bool pasted = method == kCutMix && box[2] > box[0] && box[3] > box[1];
  std::vector<uint8_t> line(pasted ? row : 0);
  for (int64_t y = 0; y < h; y++) {
    const uint8_t *src = image + y * row;
    if (pasted && y >= box[0] && y < box[2]) {  // own | partner | own
      const int64_t left = box[1] * c, right = box[3] * c;
      std::memcpy(line.data(), src, left);
      std::memcpy(line.data() + left, partner.data + y * row + left, right - left);
      std::memcpy(line.data() + right, src + right, row - right);
      src = line.data();
    }
    NormalizeRow<Out>(src, out + y * row_step, w, static_cast<int>(c), mirror, planar, plane, table);
  }
}

class DaliCutmixMixNormalize : public dali::StatelessOperator<CPUBackend> {
 public:
  explicit DaliCutmixMixNormalize(const OpSpec &spec)
      : dali::StatelessOperator<CPUBackend>(spec),
        mean_(spec.GetRepeatedArgument<float>("mean")),
        std_(spec.GetRepeatedArgument<float>("std")),
        dtype_(spec.GetArgument<dali::DALIDataType>("dtype")),
        planar_(spec.GetArgument<std::string>("output_layout") == "CHW") {
    const std::string layout = spec.GetArgument<std::string>("output_layout");
    DALI_ENFORCE(layout == "CHW" || layout == "HWC", "output_layout must be CHW or HWC, got " + layout);
    DALI_ENFORCE(dtype_ == DALI_FLOAT || dtype_ == DALI_FLOAT16, "dtype must be FLOAT or FLOAT16");
    DALI_ENFORCE(!mean_.empty() && mean_.size() == std_.size(), "mean and std must hold one value per channel");
    if (dtype_ == DALI_FLOAT)
      table32_ = NormalizeTable<float>(mean_, std_);
    else
      table16_ = NormalizeTable<dali::float16>(mean_, std_);
  }

 protected:
  bool SetupImpl(std::vector<OutputDesc> &out, const Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    DALI_ENFORCE(ws.NumInput() == 2 || ws.NumInput() == 6,
                 "takes images and mirror, or images, perm, box, method, lam and mirror");
    if (images.type() != DALI_UINT8)
      UserFail("the CPU mix-and-normalize step takes uint8 images, got " +
               std::string(dali::GetBuiltinTypeName(images.type())));
    const int n = images.num_samples();
    TensorListShape<> shape(n, 3);
    for (int i = 0; i < n; i++) {
      auto s = images.tensor_shape(i);
      CheckHWC(std::vector<int64_t>(s.begin(), s.end()));
      if (s[2] != static_cast<int64_t>(mean_.size()))
        UserFail("mean and std hold " + std::to_string(mean_.size()) + " values, the images have " +
                 std::to_string(s[2]) + " channels");
      shape.set_tensor_shape(i, planar_ ? TensorShape<>(s[2], s[0], s[1]) : TensorShape<>(s[0], s[1], s[2]));
    }
    out.resize(1);
    out[0] = {shape, dtype_};
    return true;
  }

  void RunImpl(Workspace &ws) override {
    const auto &images = ws.Input<CPUBackend>(0);
    const bool mixing = ws.NumInput() == 6;
    const auto &mirror = ws.Input<CPUBackend>(ws.NumInput() - 1);
    DALI_ENFORCE(mirror.type() == DALI_INT32, "mirror must be int32 scalars");
    auto &out = ws.Output<CPUBackend>(0);
    out.SetLayout(planar_ ? "CHW" : "HWC");
    const int n = images.num_samples();
    CheckMixInputs(images, mixing ? &ws.Input<CPUBackend>(1) : nullptr);
    static const int32_t no_box[4] = {0, 0, 0, 0};
    auto &tp = ws.GetThreadPool();
    const auto in_view = dali::view<const uint8_t, 3>(images);
    if (scratch_.size() < static_cast<size_t>(tp.NumThreads() + 1)) scratch_.resize(tp.NumThreads() + 1);
    TYPE_SWITCH(dtype_, dali::type2id, Out, (float, dali::float16), (
        const Out *table = TableOf<Out>();
        for (int i = 0; i < n; i++) {
          tp.AddWork([&, i, table](int thread) {
            const bool flip = *mirror.tensor<int32_t>(i) != 0;
            int32_t j = i, method = kNone;
            float lam = 1.f;
            const int32_t *box = no_box;
            if (mixing) {
              j = *ws.Input<CPUBackend>(1).tensor<int32_t>(i);
              box = ws.Input<CPUBackend>(2).tensor<int32_t>(i);
              method = *ws.Input<CPUBackend>(3).tensor<int32_t>(i);
              lam = *ws.Input<CPUBackend>(4).tensor<float>(i);
            }
            MixNormalizeSample<Out>(in_view[i], in_view[j], out.mutable_tensor<Out>(i), method, lam, box, flip,
                                    planar_, table, scratch_[thread < 0 ? 0 : thread + 1]);
          }, images.tensor_shape(i).num_elements());
        }
        tp.RunAll();
    ), DALI_FAIL("dtype must be FLOAT or FLOAT16"));  // NOLINT
  }

 private:
  template <typename Out>
  const Out *TableOf() const {
    if constexpr (std::is_same_v<Out, float>)
      return table32_.data();
    else
      return table16_.data();
  }

  std::vector<float> mean_, std_;
  dali::DALIDataType dtype_;
  bool planar_;
  std::vector<float> table32_;
  std::vector<dali::float16> table16_;
  std::vector<std::vector<uint8_t>> scratch_;  // one MixUp image per worker thread
};

}  // namespace dali_cutmix

namespace dali {

DALI_REGISTER_OPERATOR(DaliCutmixParams, ::dali_cutmix::DaliCutmixParams, CPU);

DALI_SCHEMA(DaliCutmixParams)
    .DocStr(R"(dali-cutmix: the per-sample CutMix/MixUp parameters and soft labels of a batch.

The outputs are named; ``outputs`` lists the ones to produce, in order:

* ``targets``: float32 [num_classes], the soft labels;
* ``perm``: int32, the partner's index in the batch;
* ``box``: int32 [y0, x0, y1, x1], half-open, the pasted region (all zero unless CutMix was applied);
* ``lam``: float32, the weight of the sample's own label;
* ``method``: int32, 0 none, 1 CutMix, 2 MixUp;
* ``in_ids``, ``anchors``, ``regions``: int32 [2], [2, 2], [2, 2], multi_paste's arguments for the two
  regions: the whole own image, then the partner's box (the whole own image again when nothing is pasted, so
  that no region has size 0);
* ``blend``: float32 [C, 2C], ``coord_transform``'s matrix ``[a*I | (1 - a)*I]`` that blends the channels of
  the own image and its partner concatenated (a = lam for MixUp, else 1).

The options have no defaults here: dali_cutmix.MixOptions defines and checks them.)")
    .NumInput(3, 4)
    .InputDox(0, "seeds", "TensorList of int32 scalars", "One random seed per sample (all of them seed the draw).")
    .InputDox(1, "labels", "TensorList of integers", "One class id per sample, shape [] or [1].")
    .InputDox(2, "shape", "TensorList of integers", "The image's shape, [H, W, C], per sample.")
    .InputDox(3, "gate", "TensorList of integer scalars, optional",
              "Per sample: 1 mixes it; 0 leaves the sample (and, in pair mode, its partner) unmixed; -1 marks "
              "padding, not a sample: never a partner, never mixed (partners are drawn among the others).")
    .OutputFn([](const OpSpec &spec) {
      return static_cast<int>(spec.GetRepeatedArgument<std::string>("outputs").size());
    })
    .AddArg("outputs", "Names of the outputs to produce, in order.", DALI_STRING_VEC)
    .AddArg("num_classes", "Soft label width.", DALI_INT32)
    .AddArg("cutmix_alpha", "CutMix lam ~ Beta(a, a); 0 disables CutMix.", DALI_FLOAT)
    .AddArg("mixup_alpha", "MixUp lam ~ Beta(a, a); 0 disables MixUp.", DALI_FLOAT)
    .AddArg("cutmix_minmax", "Box side range (lo, hi) as fractions of the side, or empty.", DALI_FLOAT_VEC)
    .AddArg("prob", "Probability that a draw mixes.", DALI_FLOAT)
    .AddArg("switch_prob", "Probability of CutMix when both are enabled.", DALI_FLOAT)
    .AddArg("mode", "'batch', 'elem' or 'pair': one draw per batch, sample or pair.", DALI_STRING)
    .AddArg("correct_lam", "Weight labels by the exact pixel share of the clipped box.", DALI_BOOL)
    .AddArg("self_pairs", "Partners from a random permutation (a sample may draw itself); false: a random "
            "derangement (never itself; a lone sample is not mixed).", DALI_BOOL)
    .AddArg("label_smoothing", "Label smoothing eps.", DALI_FLOAT);

DALI_REGISTER_OPERATOR(DaliCutmixApply, ::dali_cutmix::DaliCutmixApply, CPU);

DALI_SCHEMA(DaliCutmixApply)
    .DocStr(R"(dali-cutmix: the mixed images of a CPU batch, from DaliCutmixParams' perm, box, method and lam.)")
    .NumInput(5)
    .InputDox(0, "images", "TensorList of uint8, int16 or float32, HWC", "The batch, all of one size.")
    .InputDox(1, "perm", "TensorList of int32 scalars", "The partner's index in the batch.")
    .InputDox(2, "box", "TensorList of int32 [4]", "[y0, x0, y1, x1], the region taken from the partner.")
    .InputDox(3, "method", "TensorList of int32 scalars", "0 none, 1 CutMix, 2 MixUp.")
    .InputDox(4, "lam", "TensorList of float32 scalars", "MixUp: the own image's blend weight.")
    .NumOutput(1);

}  // namespace dali

namespace dali {

DALI_REGISTER_OPERATOR(DaliCutmixColorMap, ::dali_cutmix::DaliCutmixColorMap, CPU);

DALI_SCHEMA(DaliCutmixColorMap)
    .DocStr(R"(dali-cutmix: a per-image affine colour map of uint8 RGB HWC images into float32, with an optional
horizontal flip: ``out = M x + T + K * (g . mean(x))`` per pixel, ``mean(x)`` the image's per-channel mean.)")
    .NumInput(5)
    .InputDox(0, "images", "TensorList of uint8, HWC, 3 channels", "The batch.")
    .InputDox(1, "matrix", "TensorList of float32 [3, 3]", "M, per sample.")
    .InputDox(2, "offset", "TensorList of float32 [3]", "T, per sample.")
    .InputDox(3, "mean_weight", "TensorList of float32 [3]", "K, per sample: the weight of the mean gray value.")
    .InputDox(4, "mirror", "TensorList of int32 scalars", "1: the image is flipped horizontally first.")
    .NumOutput(1)
    .AddArg("gray_weights", "g, the weights of the gray value of the mean colour.", DALI_FLOAT_VEC);

}  // namespace dali

namespace dali {

DALI_REGISTER_OPERATOR(DaliCutmixMixNormalize, ::dali_cutmix::DaliCutmixMixNormalize, CPU);

DALI_SCHEMA(DaliCutmixMixNormalize)
    .DocStr(R"(dali-cutmix: the CPU training pipeline's mixing and flip/normalize in one pass over the pixels.

Each output image is DaliCutmixApply's mixed image (with the mixing inputs; else the image itself), flipped
horizontally where ``mirror`` is 1, then ``(x - mean) / std`` per channel in ``dtype``, CHW or HWC: exactly
the values DALI's CPU ``crop_mirror_normalize`` writes for the mixed image with the same ``mirror``, ``mean``,
``std``, ``dtype`` and ``output_layout``.)")
    .NumInput(2, 6)
    .InputDox(0, "images", "TensorList of uint8, HWC", "The batch, all of one size when mixing.")
    .InputDox(1, "perm_or_mirror", "TensorList of int32 scalars",
              "With 6 inputs: the partner's index (then box, method and lam as DaliCutmixApply's, then mirror); "
              "with 2: mirror, 1 to flip the image horizontally.")
    .InputDox(2, "box", "TensorList of int32 [4]", "[y0, x0, y1, x1], the region taken from the partner.")
    .InputDox(3, "method", "TensorList of int32 scalars", "0 none, 1 CutMix, 2 MixUp.")
    .InputDox(4, "lam", "TensorList of float32 scalars", "MixUp: the own image's blend weight.")
    .InputDox(5, "mirror", "TensorList of int32 scalars", "1: the mixed image is flipped horizontally.")
    .NumOutput(1)
    .AddArg("mean", "Per channel, subtracted (pixel units).", DALI_FLOAT_VEC)
    .AddArg("std", "Per channel, divided by (pixel units).", DALI_FLOAT_VEC)
    .AddArg("dtype", "FLOAT or FLOAT16.", DALI_DATA_TYPE)
    .AddArg("output_layout", "CHW or HWC.", DALI_STRING);

}  // namespace dali
