// ESLint with typescript-eslint's type-checked rules over the sources, tests and benchmarks
// (`npm run lint`, part of `npm test`).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'bench/out/**', 'coverage/**', '**/*.mjs', '**/*.cjs', 'eslint.config.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // `const { dropped: _d, ...rest } = v` is how a field is left out of a copy; `_x` marks an unused parameter.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_' }],
    },
  },
);
