// The self-normalizing property, shown: standard-normal data through 64
// dense layers of width 512 with LeCun-normal weights (N(0, 1/512)), printing
// the mean and variance of the activations after each layer for
//   selu      dense -> SELU            (stays near (0, 1): the SNN fixed point)
//   relu      dense -> ReLU            (the variance halves at every layer)
//   relu_bn   dense -> BatchNorm -> ReLU (BN restores the scale every layer)
// The matrix products are OpenBLAS's cblas_sgemm; everything else is normkit.
//
//   snn_depth [batch=256] [layers=64] [width=512] > snn_depth.csv
//   python3 examples/plot_snn_depth.py snn_depth.csv snn_depth.png
#include <cblas.h>
#include <normkit.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

void check(nk_status s, const char* what) {
  if (s != NK_OK) {
    std::fprintf(stderr, "%s: %s (%s)\n", what, nk_status_string(s), nk_last_error());
    std::exit(1);
  }
}

void moments(const std::vector<float>& h, double& mean, double& var) {
  double s = 0;
  for (float v : h) s += v;
  mean = s / static_cast<double>(h.size());
  double s2 = 0;
  for (float v : h) s2 += (v - mean) * (v - mean);
  var = s2 / static_cast<double>(h.size());
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 256;
  const int layers = argc > 2 ? std::atoi(argv[2]) : 64;
  const int64_t width = argc > 3 ? std::atoll(argv[3]) : 512;
  if (batch < 2 || layers < 1 || width < 1) {
    std::fprintf(stderr, "usage: snn_depth [batch>=2] [layers>=1] [width>=1]\n");
    return 2;
  }
  // The same weights and input for every activation.
  std::vector<std::vector<float>> w(layers, std::vector<float>(width * width));
  for (int l = 0; l < layers; ++l)
    check(nk_lecun_normal_init(width * width, width, NK_LECUN_NORMAL, 2017, static_cast<uint64_t>(l + 1),
                               w[l].data()),
          "lecun init");
  std::vector<float> input(batch * width);
  check(nk_lecun_normal_init(batch * width, 1, NK_LECUN_NORMAL, 2017, 0, input.data()), "input");

  nk_tensor_desc desc;
  const int64_t dims[2] = {batch, width};
  check(nk_tensor_desc_init(&desc, 2, dims, 1), "desc");
  nk_bn_options opt;
  nk_bn_options_init(&opt);

  std::printf("activation,layer,mean,variance\n");
  for (const std::string act : {"selu", "relu", "relu_bn"}) {
    std::vector<float> h = input, z(batch * width);
    double mean, var;
    moments(h, mean, var);
    std::printf("%s,0,%.6f,%.6f\n", act.c_str(), mean, var);
    for (int l = 0; l < layers; ++l) {
      // z = h W^T: (batch x width) times (width x width)^T.
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(batch), static_cast<int>(width),
                  static_cast<int>(width), 1.0f, h.data(), static_cast<int>(width), w[l].data(),
                  static_cast<int>(width), 0.0f, z.data(), static_cast<int>(width));
      if (act == "selu") {
        check(nk_selu_forward(batch * width, z.data(), h.data()), "selu");
      } else if (act == "relu") {
        check(nk_relu_forward(batch * width, z.data(), h.data()), "relu");
      } else {
        check(nk_bn_forward_training(&desc, &opt, z.data(), z.data(), nullptr, nullptr, nullptr, nullptr,
                                     nullptr, nullptr),
              "batch norm");
        check(nk_relu_forward(batch * width, z.data(), h.data()), "relu");
      }
      moments(h, mean, var);
      std::printf("%s,%d,%.6g,%.6g\n", act.c_str(), l + 1, mean, var);
    }
  }
  return 0;
}
