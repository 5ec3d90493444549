export default window.cockpit;
