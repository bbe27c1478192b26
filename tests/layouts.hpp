// The tensor layouts and sizes the tests sweep.
#pragma once

#include <vector>

#include "reference.hpp"

namespace nkt {

inline ref::Layout nchw(int64_t n, int64_t c, int64_t h, int64_t w) { return {{n, c, h, w}, {1}}; }
inline ref::Layout nhwc(int64_t n, int64_t c, int64_t h, int64_t w) { return {{n, h, w, c}, {-1}}; }

// Odd sizes (N = 1, 2, 3; C = 1, 3, 17; spatial 1, 7, 33) in both layouts,
// runs around each vector width (1, w-1, w, w+1, 2w, 3w+1 for w = 4, 8, 16)
// along the vectorized axis, and the other supported ranks.
inline std::vector<ref::Layout> sweep_layouts() {
  std::vector<ref::Layout> v;
  const int64_t spatial[][2] = {{1, 1}, {1, 7}, {3, 11}};
  for (int64_t n : {1, 2, 3})
    for (int64_t c : {1, 3, 17})
      for (auto& hw : spatial) {
        v.push_back(nchw(n, c, hw[0], hw[1]));
        v.push_back(nhwc(n, c, hw[0], hw[1]));
      }
  for (int64_t w : {3, 4, 5, 7, 8, 9, 13, 15, 16, 17, 25, 31, 32, 33, 49}) {
    v.push_back(nchw(2, 3, 1, w));   // vectors along the spatial run
    v.push_back(nhwc(2, w, 1, 3));   // vectors across channels
  }
  v.push_back(nchw(3, 300, 1, 7));            // short runs: several blocks of channels
  v.push_back(nchw(2, 150, 4, 5));
  v.push_back(nchw(19, 5, 2, 7));             // short runs down more rows than a row group
  v.push_back(nhwc(2, 1100, 1, 5));           // channels last past a part and a block of channels
  v.push_back(nhwc(3, 67, 3, 7));             // channels last through map_rows: more rows than a group,
  v.push_back(nhwc(2, 160, 3, 5));            // register-held vectors with a partial or a whole one after
  v.push_back({{5, 7}, {1}});                 // NC
  v.push_back({{4, 1}, {1}});                 // NC, one feature
  v.push_back({{2, 3, 2, 3, 5}, {1}});        // NCDHW
  v.push_back({{2, 2, 3, 5, 3}, {-1}});       // NDHWC
  v.push_back({{3, 4, 5, 6}, {1, 3}});        // feature axes that do not merge
  v.push_back({{2, 3, 4, 5, 6}, {1, 4}});
  v.push_back({{2, 3, 4, 5}, {2, 1}});        // neighbouring axes, given out of order
  v.push_back({{1, 1, 1, 1}, {1}});           // a single element
  return v;
}

}  // namespace nkt
