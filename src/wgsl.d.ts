/** WGSL sources are bundled as text (tsup `loader: { '.wgsl': 'text' }`). */
declare module '*.wgsl' {
  const source: string;
  export default source;
}
