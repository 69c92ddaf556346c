// The central difference that every gradient check of the tests compares with.
#pragma once

namespace diffuse::testing {

/// (loss() at value + h - loss() at value - h) / 2h; `value` is restored afterwards.
template <class T, class Loss>
double central_difference(T& value, Loss&& loss, double h) {
  const T keep = value;
  value = keep + h;
  const double up = loss();
  value = keep - h;
  const double down = loss();
  value = keep;
  return (up - down) / (2 * h);
}

}  // namespace diffuse::testing
