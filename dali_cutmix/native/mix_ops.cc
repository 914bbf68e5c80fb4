// dali-cutmix native operators for NVIDIA DALI (CPU backend).
//
// DaliCutmixParams: draws every per-sample mixing parameter of a batch in one pass and builds the soft
//   labels. Inputs: seeds (int32 scalar per sample, from a DALI random operator, so that the pipeline seed,
//   per-rank seeds and DALI checkpointing cover it), labels (one integer class id per sample) and the image
//   shape (int64 [H, W, C] per sample, from `images.shape()`). Pure: the same inputs give the same outputs.
// DaliCutmixApply: writes the mixed images of a CPU batch in one pass over the pixels: a copy of the
//   sample's own image with the partner's box pasted on top (CutMix), or the rounded blend
//   lam * own + (1 - lam) * partner (MixUp).
// On the GPU the stage feeds DaliCutmixParams' outputs to DALI's own GPU operators instead.
//
// Semantics: see dali_cutmix/params.py docstrings and ../../shared/design.md; the NumPy reference in
// tests/reference.py is what the tests compare against.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "dali/pipeline/operator/checkpointing/stateless_operator.h"
#include "dali/pipeline/operator/operator.h"

namespace dali_cutmix {

using dali::CPUBackend;
using dali::DALIDataType;
using dali::OpSpec;
using dali::OutputDesc;
using dali::TensorListShape;
using dali::TensorShape;
using dali::Workspace;

enum Method : int32_t { kNone = 0, kCutMix = 1, kMixUp = 2 };
enum class Mode { kBatch, kElem, kPair };

struct MixOptions {
  int num_classes = 1;
  float cutmix_alpha = 1.f, mixup_alpha = 0.f, switch_prob = 0.5f, prob = 1.f, label_smoothing = 0.f;
  bool correct_lam = true;
  bool use_minmax = false;
  float lo = 0.f, hi = 1.f;
  Mode mode = Mode::kBatch;
};

struct Draw {
  int32_t method = kNone;
  float lam = 1.f;
  int32_t box[4] = {0, 0, 0, 0};  // y0, x0, y1, x1, half-open
};

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

 private:
  const MixOptions &o_;
  std::mt19937 &rng_;
  int64_t h_, w_;
};

// Parameters of one batch: partner and draw per sample.
void DrawBatch(const MixOptions &o, std::mt19937 &rng, int n, int64_t h, int64_t w,
               std::vector<int32_t> &perm, std::vector<Draw> &draws) {
  MixSampler s(o, rng, h, w);
  std::vector<int32_t> order = s.Permutation(n);
  draws.assign(n, Draw{});
  perm.assign(n, 0);
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

// Stateless for DALI checkpointing: its randomness comes in through the seeds input.
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
    auto minmax = spec.GetRepeatedArgument<float>("minmax");
    DALI_ENFORCE(minmax.empty() || minmax.size() == 2, "minmax must be empty or (lo, hi)");
    if (minmax.size() == 2) {
      o_.use_minmax = true;
      o_.lo = minmax[0];
      o_.hi = minmax[1];
    }
    std::string mode = spec.GetArgument<std::string>("mode");
    if (mode == "batch") o_.mode = Mode::kBatch;
    else if (mode == "elem") o_.mode = Mode::kElem;
    else if (mode == "pair") o_.mode = Mode::kPair;
    else DALI_FAIL("mode must be one of 'batch', 'elem', 'pair', got '" + mode + "'");
    DALI_ENFORCE(o_.num_classes >= 1, "num_classes must be >= 1");
  }

 protected:
  bool SetupImpl(std::vector<OutputDesc> &out, const Workspace &ws) override {
    int n = ws.GetInputBatchSize(0);
    auto scalar = dali::uniform_list_shape(n, TensorShape<>{});
    out.resize(9);
    out[0] = {dali::uniform_list_shape(n, TensorShape<>{o_.num_classes}), DALI_FLOAT};  // labels
    out[1] = {scalar, DALI_INT32};                                                       // perm
    out[2] = {dali::uniform_list_shape(n, TensorShape<>{4}), DALI_INT32};                // box
    out[3] = {scalar, DALI_FLOAT};                                                       // lam
    out[4] = {scalar, DALI_INT32};                                                       // method
    out[5] = {dali::uniform_list_shape(n, TensorShape<>{2}), DALI_INT32};                // in_ids
    out[6] = {dali::uniform_list_shape(n, TensorShape<>{2, 2}), DALI_INT32};             // anchors
    out[7] = {dali::uniform_list_shape(n, TensorShape<>{2, 2}), DALI_INT32};             // regions
    out[8] = {scalar, DALI_FLOAT};                                                       // blend w
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
      std::vector<int64_t> s = ReadInts(shapes, i);
      if (i == 0) {
        DALI_ENFORCE(s.size() == 3, "images reaching the cutmix stage must be HWC (3 dimensions), got " +
                                        std::to_string(s.size()) + " dimensions");
        hwc = s;
      } else if (s != hwc) {
        DALI_FAIL("images reaching the cutmix stage must all have one size (resize or crop them first); "
                  "got (H, W) (" + std::to_string(hwc[0]) + ", " + std::to_string(hwc[1]) + ") and (" +
                  std::to_string(s[0]) + ", " + std::to_string(s.size() > 1 ? s[1] : 0) + ")");
      }
    }
    std::vector<int64_t> y(n);
    for (int i = 0; i < n; i++) {
      std::vector<int64_t> v = ReadInts(labels, i);
      DALI_ENFORCE(v.size() == 1, "labels reaching the cutmix stage must hold exactly one class id per "
                                  "sample, got " + std::to_string(v.size()));
      y[i] = v[0];
      DALI_ENFORCE(y[i] >= 0 && y[i] < o_.num_classes,
                   "labels must be in [0, num_classes=" + std::to_string(o_.num_classes) + "), got " +
                       std::to_string(y[i]));
    }
    std::vector<uint32_t> seed_words(n);
    for (int i = 0; i < n; i++) seed_words[i] = static_cast<uint32_t>(ReadInts(seeds, i).at(0));
    std::seed_seq seq(seed_words.begin(), seed_words.end());
    std::mt19937 rng(seq);

    int64_t h = n ? hwc[0] : 0, w = n ? hwc[1] : 0;
    std::vector<int32_t> perm;
    std::vector<Draw> draws;
    DrawBatch(o_, rng, n, h, w, perm, draws);
    if (ws.NumInput() > 3) {  // optional gate: a sample whose gate is 0 (or whose partner's is) is not mixed
      const auto &gate = ws.Input<CPUBackend>(3);
      DALI_ENFORCE(gate.num_samples() == n, "the mixing gate must have one value per sample");
      for (int i = 0; i < n; i++) {
        if (ReadInts(gate, i).at(0) == 0) {
          draws[i] = Draw{};
          if (o_.mode == Mode::kPair) draws[perm[i]] = Draw{};
        }
      }
    }

    const float off = o_.label_smoothing / o_.num_classes;
    const float on_minus_off = 1.f - o_.label_smoothing;
    for (int i = 0; i < n; i++) {
      const Draw &d = draws[i];
      float *t = ws.Output<CPUBackend>(0).mutable_tensor<float>(i);
      std::fill(t, t + o_.num_classes, off);
      t[y[i]] += d.lam * on_minus_off;
      t[y[perm[i]]] += (1.f - d.lam) * on_minus_off;
      *ws.Output<CPUBackend>(1).mutable_tensor<int32_t>(i) = perm[i];
      std::copy(d.box, d.box + 4, ws.Output<CPUBackend>(2).mutable_tensor<int32_t>(i));
      *ws.Output<CPUBackend>(3).mutable_tensor<float>(i) = d.lam;
      *ws.Output<CPUBackend>(4).mutable_tensor<int32_t>(i) = d.method;
      int32_t *ids = ws.Output<CPUBackend>(5).mutable_tensor<int32_t>(i);
      ids[0] = i;
      ids[1] = perm[i];
      int32_t *anchor = ws.Output<CPUBackend>(6).mutable_tensor<int32_t>(i);
      anchor[0] = anchor[1] = 0;
      anchor[2] = d.box[0];
      anchor[3] = d.box[1];
      int32_t *region = ws.Output<CPUBackend>(7).mutable_tensor<int32_t>(i);
      region[0] = static_cast<int32_t>(h);
      region[1] = static_cast<int32_t>(w);
      region[2] = d.box[2] - d.box[0];
      region[3] = d.box[3] - d.box[1];
      *ws.Output<CPUBackend>(8).mutable_tensor<float>(i) = d.method == kMixUp ? d.lam : 1.f;
    }
  }


 private:
  static std::vector<int64_t> ReadInts(const dali::TensorList<CPUBackend> &tl, int i) {
    int64_t count = tl.tensor_shape(i).num_elements();
    std::vector<int64_t> v(count);
    switch (tl.type()) {
      case DALI_INT32: std::copy_n(tl.tensor<int32_t>(i), count, v.begin()); break;
      case DALI_INT64: std::copy_n(tl.tensor<int64_t>(i), count, v.begin()); break;
      case DALI_UINT32: std::copy_n(tl.tensor<uint32_t>(i), count, v.begin()); break;
      case DALI_UINT64: std::copy_n(tl.tensor<uint64_t>(i), count, v.begin()); break;
      case DALI_INT16: std::copy_n(tl.tensor<int16_t>(i), count, v.begin()); break;
      case DALI_UINT8: std::copy_n(tl.tensor<uint8_t>(i), count, v.begin()); break;
      default: DALI_FAIL("expected an integer input (labels, seeds, shapes), got type id " +
                         std::to_string(static_cast<int>(tl.type())));
    }
    return v;
  }

  MixOptions o_;
};

template <typename T>
void MixSample(const T *own, const T *partner, T *out, int64_t h, int64_t w, int64_t c, int32_t method,
               float lam, const int32_t *box) {
  const int64_t total = h * w * c;
  if (method == kMixUp) {
    const float a = lam, b = 1.f - lam;
    if constexpr (std::is_integral_v<T>) {
      // Round half away from zero, as DALI's cast (the GPU path) does; the blend of two in-range values stays
      // in range, so only negative types need the sign. Written so that the compiler vectorizes it.
      for (int64_t k = 0; k < total; k++) {
        float v = a * static_cast<float>(own[k]) + b * static_cast<float>(partner[k]);
        out[k] = static_cast<T>(v + (v < 0 ? -0.5f : 0.5f));
      }
    } else {
      for (int64_t k = 0; k < total; k++) out[k] = static_cast<T>(a * own[k] + b * partner[k]);
    }
    return;
  }
  std::memcpy(out, own, total * sizeof(T));
  if (method != kCutMix || box[2] <= box[0] || box[3] <= box[1]) return;
  const int64_t row = w * c, span = (box[3] - box[1]) * c * sizeof(T);
  for (int64_t y = box[0]; y < box[2]; y++) {
    const int64_t at = y * row + box[1] * c;
    std::memcpy(out + at, partner + at, span);
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
    DALI_ENFORCE(n == 0 || images.shape().sample_dim() == 3, "images must be HWC");
    for (int i = 0; i < n; i++) {
      int32_t j = *perm.tensor<int32_t>(i);
      DALI_ENFORCE(j >= 0 && j < n, "partner index out of range");
      DALI_ENFORCE(images.tensor_shape(i) == images.tensor_shape(j),
                   "images reaching the cutmix stage must all have one size (resize or crop them first)");
    }
    auto &tp = ws.GetThreadPool();
    for (int i = 0; i < n; i++) {
      tp.AddWork([&, i](int) {
        const auto &s = images.tensor_shape(i);
        const int32_t j = *perm.tensor<int32_t>(i);
        const int32_t m = *method.tensor<int32_t>(i);
        const float l = *lam.tensor<float>(i);
        const int32_t *b = box.tensor<int32_t>(i);
        switch (images.type()) {
          case DALI_UINT8:
            MixSample(images.tensor<uint8_t>(i), images.tensor<uint8_t>(j), out.mutable_tensor<uint8_t>(i),
                      s[0], s[1], s[2], m, l, b);
            break;
          case DALI_FLOAT:
            MixSample(images.tensor<float>(i), images.tensor<float>(j), out.mutable_tensor<float>(i),
                      s[0], s[1], s[2], m, l, b);
            break;
          case DALI_INT16:
            MixSample(images.tensor<int16_t>(i), images.tensor<int16_t>(j), out.mutable_tensor<int16_t>(i),
                      s[0], s[1], s[2], m, l, b);
            break;
          default:
            DALI_FAIL("cutmix on the CPU supports uint8, int16 and float32 images");
        }
      }, images.tensor_shape(i).num_elements());
    }
    tp.RunAll();
  }

};

}  // namespace dali_cutmix

namespace dali {

DALI_REGISTER_OPERATOR(DaliCutmixParams, ::dali_cutmix::DaliCutmixParams, CPU);

DALI_SCHEMA(DaliCutmixParams)
    .DocStr(R"(dali-cutmix: per-sample CutMix/MixUp parameters and soft labels of a batch.

Inputs: seeds (int32 scalar per sample), labels (one integer class id per sample), image shape (HWC) and,
optionally, a gate (integer scalar per sample; 0 turns mixing off for that sample).
Outputs: soft labels (float32 [num_classes]), perm (int32), box (int32 [y0, x0, y1, x1]), lam (float32),
method (int32: 0 none, 1 CutMix, 2 MixUp), in_ids (int32 [2]), anchors (int32 [2, 2]),
regions (int32 [2, 2]), blend weight (float32: lam for MixUp, else 1).)")
    .NumInput(3, 4)
    .NumOutput(9)
    .AddArg("num_classes", "Number of classes (soft label width).", DALI_INT32)
    .AddOptionalArg("cutmix_alpha", "CutMix lam ~ Beta(a, a); 0 disables CutMix.", 1.0f)
    .AddOptionalArg("mixup_alpha", "MixUp lam ~ Beta(a, a); 0 disables MixUp.", 0.0f)
    .AddOptionalArg("switch_prob", "Probability of CutMix when both are enabled.", 0.5f)
    .AddOptionalArg("prob", "Probability of mixing (per batch, sample or pair).", 1.0f)
    .AddOptionalArg("label_smoothing", "Label smoothing eps.", 0.0f)
    .AddOptionalArg("correct_lam", "Weight labels by the exact pixel share of the clipped box.", true)
    .AddOptionalArg("minmax", "Box side range (lo, hi) as fractions of the image side.",
                    std::vector<float>())
    .AddOptionalArg("mode", "'batch', 'elem' or 'pair'.", std::string("batch"));

DALI_REGISTER_OPERATOR(DaliCutmixApply, ::dali_cutmix::DaliCutmixApply, CPU);

DALI_SCHEMA(DaliCutmixApply)
    .DocStr(R"(dali-cutmix: mixed images of a CPU batch from DaliCutmixParams' perm, box, method and lam.)")
    .NumInput(5)
    .NumOutput(1);

}  // namespace dali
