import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['dist/', 'web/pkg/', 'node_modules/', 'test-results/', 'playwright-report/', 'bench/.venv/'] },
  js.configs.recommended,
  {
    files: ['web/**/*.js'],
    languageOptions: { globals: { ...globals.browser, ...globals.worker } },
  },
  {
    files: ['*.js', 'tests/**/*.js', 'web/bench.js', 'bench/**/*.js'],
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
  },
];
