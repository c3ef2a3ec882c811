// Builds plotly-orthoscope.min.js: plotly.js 4.1.1 with only the traces the report draws (scatter, bar, heatmap).
// In an empty folder holding this file and entry.js:
//   npm install --ignore-scripts plotly.js@4.1.1 esbuild esbuild-plugin-inline-css@0.0.1 \
//       esbuild-plugin-environment stream-browserify
//   node build.js
// then prepend the MIT licence banner (see the first line of plotly-orthoscope.min.js).
const esbuild = require('esbuild');
const { environmentPlugin } = require('esbuild-plugin-environment');
const InlineCSSPlugin = require('esbuild-plugin-inline-css');
esbuild.build({entryPoints: ['entry.js'], outfile: 'plotly-orthoscope.min.js', format: 'iife', globalName: 'Plotly',
  bundle: true, minify: true, legalComments: 'none', plugins: [InlineCSSPlugin(), environmentPlugin({NODE_DEBUG: false})],
  alias: {regl: '@plotly/regl', stream: 'stream-browserify'}, define: {global: 'window', 'define.amd': 'false'},
  target: 'es2016', logLevel: 'warning'}).catch(() => process.exit(1));
