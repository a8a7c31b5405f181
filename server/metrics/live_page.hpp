#pragma once

#include <string_view>

// The live page and the chart library it draws with, embedded at build time
// (server/metrics/CMakeLists.txt turns live_page.html and Debian's libjs-dygraphs files into
// live_page_data.cpp), so nothing is fetched from the network when the page runs.
namespace polyecho::live_page {

extern const std::string_view kHtml;
extern const std::string_view kDygraphJs;
extern const std::string_view kDygraphCss;

}  // namespace polyecho::live_page
