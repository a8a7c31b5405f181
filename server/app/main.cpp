#include "app/server_main.hpp"

int main(int argc, char** argv) {
  return polyecho::server_main(argc, argv);
}
