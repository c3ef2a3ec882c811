const esbuild = require('esbuild');
const { environmentPlugin } = require('esbuild-plugin-environment');
const InlineCSSPlugin = require('esbuild-plugin-inline-css');
esbuild.build({entryPoints: ['entry.js'], outfile: 'plotly-orthoscope.min.js', format: 'iife', globalName: 'Plotly',
  bundle: true, minify: true, legalComments: 'none', plugins: [InlineCSSPlugin(), environmentPlugin({NODE_DEBUG: false})],
  alias: {regl: '@plotly/regl', stream: 'stream-browserify'}, define: {global: 'window', 'define.amd': 'false'},
  target: 'es2016', logLevel: 'warning'}).catch(() => process.exit(1));
